//! Resource limits through cgroups: v2 where the unified hierarchy is mounted with the
//! controllers, else v1 (also the hybrid layout, where v2 holds no controller that matters).

use std::io;
use std::path::{Path, PathBuf};

use crate::plan::Resources;

const ROOT: &str = "/sys/fs/cgroup";
const CPU_PERIOD_US: u64 = 100_000;

fn unified_root() -> Option<PathBuf> {
    let root = Path::new(ROOT);
    let controllers = std::fs::read_to_string(root.join("cgroup.controllers")).ok()?;
    let has = |c: &str| controllers.split_whitespace().any(|x| x == c);
    (has("memory") && has("cpu")).then(|| root.to_path_buf())
}

/// This process's cgroup path in the v1 hierarchy of `controller`.
fn own_v1_path(controller: &str) -> String {
    let text = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
            ctrls.split(',').any(|c| c == controller).then(|| path.to_string())
        })
        .next()
        .unwrap_or_else(|| "/".into())
}

fn write(path: &Path, value: &str) -> io::Result<()> {
    std::fs::write(path, value).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

/// The cgroups of one pod: directories made for it, removed when it is collected.
#[derive(Debug, Default)]
pub struct PodCgroups {
    /// Deepest first.
    pub dirs: Vec<PathBuf>,
}

impl PodCgroups {
    /// Makes a cgroup for each app that has limits; returns, per app, the `cgroup.procs` files
    /// its process must join.
    pub fn create(uuid: &str, apps: &[(String, Resources)]) -> io::Result<(PodCgroups, Vec<Vec<PathBuf>>)> {
        let mut made = PodCgroups::default();
        let mut procs = Vec::new();
        for (app, res) in apps {
            if res.memory.is_none() && res.cpu_millis.is_none() {
                procs.push(Vec::new());
                continue;
            }
            let files = match unified_root() {
                Some(root) => made.create_v2(&root, uuid, app, res)?,
                None => made.create_v1(uuid, app, res)?,
            };
            procs.push(files);
        }
        made.dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        made.dirs.dedup();
        Ok((made, procs))
    }

    fn mkdir(&mut self, path: &Path) -> io::Result<()> {
        match std::fs::create_dir(path) {
            Ok(()) => {
                self.dirs.push(path.to_path_buf());
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        }
    }

    fn create_v1(&mut self, uuid: &str, app: &str, res: &Resources) -> io::Result<Vec<PathBuf>> {
        let mut files = Vec::new();
        let mut with = |controller: &str, settings: Vec<(&str, String)>| -> io::Result<()> {
            let base = Path::new(ROOT).join(controller).join(own_v1_path(controller).trim_start_matches('/'));
            let pod = base.join(format!("rkt-{uuid}"));
            self.mkdir(&pod)?;
            let dir = pod.join(app);
            self.mkdir(&dir)?;
            for (file, value) in settings {
                write(&dir.join(file), &value)?;
            }
            files.push(dir.join("cgroup.procs"));
            Ok(())
        };
        if let Some(bytes) = res.memory {
            with("memory", vec![("memory.limit_in_bytes", bytes.to_string())])?;
        }
        if let Some(millis) = res.cpu_millis {
            let quota = (millis * CPU_PERIOD_US / 1000).max(1000);
            with(
                "cpu",
                vec![("cpu.cfs_period_us", CPU_PERIOD_US.to_string()), ("cpu.cfs_quota_us", quota.to_string())],
            )?;
        }
        Ok(files)
    }

    fn create_v2(&mut self, root: &Path, uuid: &str, app: &str, res: &Resources) -> io::Result<Vec<PathBuf>> {
        // Under the root, which may hold processes and still delegate controllers.
        let parent = root.join("rkt");
        self.mkdir(&parent)?;
        let pod = parent.join(uuid);
        self.mkdir(&pod)?;
        for dir in [root, &parent, &pod] {
            let _ = write(&dir.join("cgroup.subtree_control"), "+memory +cpu");
        }
        let dir = pod.join(app);
        self.mkdir(&dir)?;
        if let Some(bytes) = res.memory {
            write(&dir.join("memory.max"), &bytes.to_string())?;
            let _ = write(&dir.join("memory.swap.max"), "0");
        }
        if let Some(millis) = res.cpu_millis {
            let quota = (millis * CPU_PERIOD_US / 1000).max(1000);
            write(&dir.join("cpu.max"), &format!("{quota} {CPU_PERIOD_US}"))?;
        }
        Ok(vec![dir.join("cgroup.procs")])
    }

    /// Writes the list of directories into the pod, so that `rkt gc` can remove them if this
    /// process cannot.
    pub fn save(&self, pod_dir: &Path) -> io::Result<()> {
        let text: String = self.dirs.iter().map(|d| format!("{}\n", d.display())).collect();
        std::fs::write(pod_dir.join("cgroups"), text)
    }

    /// Removes the pod's cgroups (they must be empty: the pod has exited).
    pub fn remove(pod_dir: &Path) {
        let Ok(text) = std::fs::read_to_string(pod_dir.join("cgroups")) else { return };
        for line in text.lines() {
            let _ = std::fs::remove_dir(line);
        }
    }
}
