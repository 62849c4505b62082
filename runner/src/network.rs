//! The pod's network namespace from the host's side: kept alive by a bind mount in the pod
//! directory while CNI adds it to the network, and until CNI has removed it again.

use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use serde::{Deserialize, Serialize};

use crate::cni::{self, PortMapping};

/// What `net-info.json` records, so that whoever collects the pod can undo it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetInfo {
    pub network: serde_json::Value,
    pub result: serde_json::Value,
    pub ports: Vec<PortMapping>,
}

fn netns_path(pod_dir: &Path) -> PathBuf {
    pod_dir.join("netns")
}

fn info_path(pod_dir: &Path) -> PathBuf {
    pod_dir.join("net-info.json")
}

/// Joins the network namespace of `pid` (the pod's init) to rkt's default network.
pub fn setup(pod_dir: &Path, uuid: &str, pid: i32, ports: &[PortMapping]) -> Result<NetInfo, String> {
    let netns = netns_path(pod_dir);
    std::fs::write(&netns, b"").map_err(|e| format!("{}: {e}", netns.display()))?;
    let source = format!("/proc/{pid}/ns/net");
    mount(Some(source.as_str()), &netns, None::<&str>, MsFlags::MS_BIND, None::<&str>)
        .map_err(|e| format!("keeping the pod's network namespace: {e}"))?;
    let network = cni::default_network(ports);
    // Recorded before ADD: a failed or interrupted ADD is undone the same way.
    let mut info = NetInfo { network, result: serde_json::Value::Null, ports: ports.to_vec() };
    save(pod_dir, &info)?;
    match cni::add(&info.network, uuid, &netns, ports) {
        Ok(result) => {
            info.result = result;
            save(pod_dir, &info)?;
            Ok(info)
        }
        Err(e) => {
            teardown(pod_dir, uuid);
            Err(e)
        }
    }
}

fn save(pod_dir: &Path, info: &NetInfo) -> Result<(), String> {
    let path = info_path(pod_dir);
    std::fs::write(&path, serde_json::to_vec_pretty(info).expect("serializes"))
        .map_err(|e| format!("{}: {e}", path.display()))
}

pub fn load(pod_dir: &Path) -> Option<NetInfo> {
    serde_json::from_slice(&std::fs::read(info_path(pod_dir)).ok()?).ok()
}

/// Removes the pod from its network and lets its namespace go. Safe to call more than once.
pub fn teardown(pod_dir: &Path, uuid: &str) {
    let netns = netns_path(pod_dir);
    if let Some(info) = load(pod_dir) {
        let prev = (!info.result.is_null()).then_some(&info.result);
        let _ = cni::del(&info.network, uuid, &netns, prev, &info.ports);
        let _ = std::fs::rename(info_path(pod_dir), pod_dir.join("net-info.released.json"));
    }
    if netns.exists() {
        let _ = umount2(&netns, MntFlags::MNT_DETACH);
        let _ = std::fs::remove_file(&netns);
    }
}

/// `rkt status`'s `networks=` value: `default:ip4=172.16.28.2`.
pub fn describe(pod_dir: &Path) -> Option<String> {
    let info = load(pod_dir)
        .or_else(|| serde_json::from_slice(&std::fs::read(pod_dir.join("net-info.released.json")).ok()?).ok())?;
    Some(format!("default:ip4={}", cni::ipv4(&info.result)?))
}
