//! Pod directories under `$dir/pods`, rkt's state machine: a pod moves between state
//! directories by rename, and a live process holds a flock on the pod directory.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use nix::fcntl::{Flock, FlockArg};

/// The state directories, in the order a pod passes through them.
pub const STATE_DIRS: [&str; 6] = ["embryo", "prepare", "prepared", "run", "exited-garbage", "garbage"];

#[derive(Debug, thiserror::Error)]
pub enum PodError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("UUID cannot be empty")]
    EmptyUuid,
    #[error("no matches found for {0:?}")]
    NoMatch(String),
    #[error("ambiguous uuid, {0} matches")]
    Ambiguous(usize),
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = PodError> = std::result::Result<T, E>;

pub(crate) fn io_at(path: &Path) -> impl FnOnce(io::Error) -> PodError + '_ {
    move |source| PodError::Io { path: path.to_path_buf(), source }
}

/// A random (version 4) UUID, as rkt names pods.
pub fn new_uuid() -> io::Result<String> {
    let mut b = [0u8; 16];
    let mut filled = 0;
    while filled < b.len() {
        // SAFETY: the buffer is valid for the remaining length.
        let n = unsafe { libc::getrandom(b[filled..].as_mut_ptr().cast(), b.len() - filled, 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        filled += n as usize;
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..]))
}

/// What `rkt list` and `rkt status` call a pod's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodState {
    Embryo,
    Preparing,
    AbortedPrepare,
    Prepared,
    Running,
    Exited,
    ExitedDeleting,
    ExitedGarbage,
    Deleting,
    Garbage,
}

impl PodState {
    pub fn as_str(self) -> &'static str {
        match self {
            PodState::Embryo => "embryo",
            PodState::Preparing => "preparing",
            PodState::AbortedPrepare => "aborted prepare",
            PodState::Prepared => "prepared",
            PodState::Running => "running",
            PodState::Exited => "exited",
            PodState::ExitedDeleting => "exited deleting",
            PodState::ExitedGarbage => "exited garbage",
            PodState::Deleting => "deleting",
            PodState::Garbage => "garbage",
        }
    }

    fn from_dir(dir: &str, locked: bool) -> Self {
        match (dir, locked) {
            ("embryo", _) => PodState::Embryo,
            ("prepare", true) => PodState::Preparing,
            ("prepare", false) => PodState::AbortedPrepare,
            ("prepared", _) => PodState::Prepared,
            ("run", true) => PodState::Running,
            ("run", false) => PodState::Exited,
            ("exited-garbage", true) => PodState::ExitedDeleting,
            ("exited-garbage", false) => PodState::ExitedGarbage,
            (_, true) => PodState::Deleting,
            (_, false) => PodState::Garbage,
        }
    }
}

/// A pod found on disk.
#[derive(Debug, Clone)]
pub struct PodInfo {
    pub uuid: String,
    pub dir: PathBuf,
    pub state: PodState,
}

impl PodInfo {
    /// When the pod was created (`pod-created`'s time).
    pub fn created(&self) -> Option<SystemTime> {
        self.dir.join("pod-created").metadata().and_then(|m| m.modified()).ok()
    }

    /// When the pod started (the time of its `pid` file).
    pub fn started(&self) -> Option<SystemTime> {
        self.dir.join("pid").metadata().and_then(|m| m.modified()).ok()
    }

    /// The host PID of the pod's init, while it has one.
    pub fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.dir.join("pid")).ok()?.trim().parse().ok()
    }

    /// The host PID of an app's process, while it runs.
    pub fn app_pid(&self, app: &str) -> Option<i32> {
        let init = self.pid()?;
        let ns_pid: i32 =
            std::fs::read_to_string(self.dir.join("status").join(format!("{app}.pid"))).ok()?.trim().parse().ok()?;
        let children = std::fs::read_to_string(format!("/proc/{init}/task/{init}/children")).ok()?;
        children.split_whitespace().filter_map(|c| c.parse::<i32>().ok()).find(|host| {
            let status = std::fs::read_to_string(format!("/proc/{host}/status")).unwrap_or_default();
            status
                .lines()
                .find_map(|l| l.strip_prefix("NSpid:"))
                .and_then(|l| l.split_whitespace().last()?.parse().ok())
                == Some(ns_pid)
        })
    }

    /// The exit status each app recorded, by app name.
    pub fn app_statuses(&self) -> Vec<(String, i32)> {
        let mut out: Vec<(String, i32)> = std::fs::read_dir(self.dir.join("status"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().ends_with(".pid"))
            .filter_map(|e| {
                let code = std::fs::read_to_string(e.path()).ok()?.trim().parse().ok()?;
                Some((e.file_name().to_string_lossy().into_owned(), code))
            })
            .collect();
        out.sort();
        out
    }
}

/// A pod held by this process: the flock on its directory is what makes it "preparing" or
/// "running" to everyone else.
pub struct PodLock {
    pub uuid: String,
    pub dir: PathBuf,
    lock: Flock<File>,
}

impl PodLock {
    /// The raw fd of the lock, to hand to the pod's init so that the lock outlives this process.
    pub fn fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.lock.as_raw_fd()
    }

    /// Moves the pod to another state directory.
    pub fn move_to(&mut self, pods: &Pods, state_dir: &str) -> Result<()> {
        let dest = pods.root.join(state_dir).join(&self.uuid);
        std::fs::rename(&self.dir, &dest).map_err(io_at(&dest))?;
        self.dir = dest;
        Ok(())
    }
}

pub struct Pods {
    root: PathBuf,
}

fn lock_dir(path: &Path, arg: FlockArg) -> io::Result<Flock<File>> {
    let file = File::open(path)?;
    Flock::lock(file, arg).map_err(|(_, e)| io::Error::from(e))
}

impl Pods {
    pub fn new(data_dir: &Path) -> Self {
        Pods { root: data_dir.join("pods") }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A new pod in `prepare/`, locked by this process.
    pub fn create(&self) -> Result<PodLock> {
        for dir in STATE_DIRS {
            let path = self.root.join(dir);
            std::fs::create_dir_all(&path).map_err(io_at(&path))?;
        }
        let uuid = new_uuid().map_err(io_at(&self.root))?;
        // Made in embryo/ and locked there, so that nobody sees it unlocked in prepare/.
        let embryo = self.root.join("embryo").join(&uuid);
        std::fs::create_dir(&embryo).map_err(io_at(&embryo))?;
        let lock = lock_dir(&embryo, FlockArg::LockExclusive).map_err(io_at(&embryo))?;
        let mut pod = PodLock { uuid, dir: embryo, lock };
        pod.move_to(self, "prepare")?;
        let created = pod.dir.join("pod-created");
        std::fs::write(&created, b"").map_err(io_at(&created))?;
        Ok(pod)
    }

    /// Locks an existing pod exclusively, waiting for its holder when `wait`.
    pub fn lock(&self, pod: &PodInfo, wait: bool) -> Result<Option<PodLock>> {
        let arg = if wait { FlockArg::LockExclusive } else { FlockArg::LockExclusiveNonblock };
        match lock_dir(&pod.dir, arg) {
            Ok(lock) => {
                // It may have moved while we waited.
                let current = self.find(&pod.uuid)?;
                if current.dir != pod.dir {
                    return self.lock(&current, wait);
                }
                Ok(Some(PodLock { uuid: pod.uuid.clone(), dir: pod.dir.clone(), lock }))
            }
            Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(None),
            Err(e) => Err(io_at(&pod.dir)(e)),
        }
    }

    /// Every pod, in every state directory.
    pub fn list(&self) -> Result<Vec<PodInfo>> {
        let mut pods = Vec::new();
        for dir in STATE_DIRS {
            let path = self.root.join(dir);
            let Ok(entries) = std::fs::read_dir(&path) else { continue };
            for entry in entries.flatten() {
                let uuid = entry.file_name().to_string_lossy().into_owned();
                let dir_path = entry.path();
                let locked = match lock_dir(&dir_path, FlockArg::LockSharedNonblock) {
                    Ok(_) => false,
                    Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => true,
                    // Moved or removed meanwhile.
                    Err(_) => continue,
                };
                pods.push(PodInfo { uuid, dir: dir_path, state: PodState::from_dir(dir, locked) });
            }
        }
        pods.sort_by(|a, b| a.created().cmp(&b.created()).then_with(|| a.uuid.cmp(&b.uuid)));
        Ok(pods)
    }

    /// The pod whose UUID starts with `prefix` (case-insensitive), as rkt resolves UUID arguments.
    pub fn find(&self, prefix: &str) -> Result<PodInfo> {
        let prefix = prefix.trim().to_ascii_lowercase();
        if prefix.is_empty() {
            return Err(PodError::EmptyUuid);
        }
        let mut found: Vec<PodInfo> = self.list()?.into_iter().filter(|p| p.uuid.starts_with(&prefix)).collect();
        found.dedup_by(|a, b| a.uuid == b.uuid);
        match found.len() {
            0 => Err(PodError::NoMatch(prefix)),
            1 => Ok(found.remove(0)),
            n => Err(PodError::Ambiguous(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_version_four() {
        let u = new_uuid().unwrap();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_ne!(u, new_uuid().unwrap());
    }

    #[test]
    fn states_follow_the_directory_and_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let pods = Pods::new(dir.path());
        let mut pod = pods.create().unwrap();
        assert_eq!(pods.find(&pod.uuid[..8]).unwrap().state, PodState::Preparing);
        pod.move_to(&pods, "run").unwrap();
        assert_eq!(pods.find(&pod.uuid).unwrap().state, PodState::Running);
        let uuid = pod.uuid.clone();
        drop(pod);
        let info = pods.find(&uuid.to_uppercase()).unwrap();
        assert_eq!(info.state, PodState::Exited);
        assert!(pods.lock(&info, false).unwrap().is_some());
        assert!(matches!(pods.find("zzz"), Err(PodError::NoMatch(_))));
        assert!(matches!(pods.find(""), Err(PodError::EmptyUuid)));
    }
}
