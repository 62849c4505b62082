//! The runtime: pod directories and their states, the plan of a pod, and the small init that
//! runs as the pod's PID 1.

pub mod caps;
pub mod cgroups;
pub mod cni;
pub mod copy_up;
pub mod enter;
pub mod init;
pub mod launch;
pub mod limits;
pub mod network;
pub mod plan;
pub mod pod;
pub mod spec;
