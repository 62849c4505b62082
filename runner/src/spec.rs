//! What the pod's init needs to know, decided by `rkt run` before the pod starts and written
//! to `runtime.json` in the pod directory. Nothing in it is looked up again inside the pod.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetMode {
    /// The host's network namespace.
    Host,
    /// A namespace of its own with only `lo`.
    None,
    /// A namespace of its own joined to the host by a CNI plugin.
    #[default]
    Default,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PodSpec {
    pub uuid: String,
    pub hostname: String,
    pub net: NetMode,
    /// Contents of each app's `/etc/hosts`.
    pub hosts: String,
    /// Contents of each app's `/etc/resolv.conf`; `None` leaves the image's.
    pub resolv_conf: Option<String>,
    pub interactive: bool,
    /// `--port` mappings, for the default network.
    #[serde(default)]
    pub ports: Vec<crate::cni::PortMapping>,
    pub apps: Vec<AppSpec>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppSpec {
    pub name: String,
    /// The rendered tree's root filesystem: the read-only lower layer of the app's overlay.
    pub lower: PathBuf,
    pub exec: Vec<String>,
    pub env: Vec<(String, String)>,
    pub uid: u32,
    pub gid: u32,
    pub supplementary_gids: Vec<u32>,
    pub working_dir: String,
    pub mounts: Vec<BindMount>,
    /// Capability numbers the app keeps in its bounding set.
    pub capabilities: Vec<u32>,
    pub read_only_rootfs: bool,
    pub limits: crate::plan::Resources,
    /// The `cgroup.procs` files the app's process joins (its resource limits).
    #[serde(default)]
    pub cgroups: Vec<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BindMount {
    /// A host path (host volumes), or a path relative to the pod directory (empty volumes),
    /// which moves between state directories.
    pub source: PathBuf,
    /// Absolute path inside the app.
    pub target: String,
    pub read_only: bool,
    pub recursive: bool,
    /// An empty volume made for a mount point given none; an image converted from Docker
    /// fills it with what the image holds there.
    #[serde(default)]
    pub implicit: bool,
}

/// Where things live in a pod directory.
pub struct PodPaths<'a>(pub &'a Path);

impl PodPaths<'_> {
    pub fn runtime_spec(&self) -> PathBuf {
        self.0.join("runtime.json")
    }
    pub fn stage1_root(&self) -> PathBuf {
        self.0.join("stage1/rootfs")
    }
    /// The app's root inside the stage1 root, as rkt lays it out.
    pub fn app_root_in_stage1(app: &str) -> PathBuf {
        PathBuf::from("opt/stage2").join(app).join("rootfs")
    }
    pub fn upper(&self, app: &str) -> PathBuf {
        self.0.join("overlay").join(app).join("upper")
    }
    pub fn work(&self, app: &str) -> PathBuf {
        self.0.join("overlay").join(app).join("work")
    }
    pub fn status_dir(&self) -> PathBuf {
        self.0.join("status")
    }
    /// An empty volume's directory, relative to the pod directory.
    pub fn volume_in_pod(name: &str) -> PathBuf {
        PathBuf::from("volumes").join(name)
    }
}
