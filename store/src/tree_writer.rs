//! Writes entries into a directory tree that may hold hostile names. Every path is resolved from
//! a directory fd one component at a time with `O_NOFOLLOW`: a symlink is never followed, and a
//! non-directory where a directory is needed is replaced, as appc renders layered images.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{
    fchmod, fchmodat, fstatat, futimens, mkdirat, mknodat, utimensat, FchmodatFlags, Mode, SFlag, UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::space::SpaceGuard;
use crate::tree_hash::FileHasher;

/// The owner, mode, time and extended attributes an entry gets.
#[derive(Debug, Clone, Default)]
pub struct Meta {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

#[derive(Debug, Clone, Copy)]
pub enum Special {
    Char(u64),
    Block(u64),
    Fifo,
}

const DIR_FLAGS: OFlag = OFlag::O_RDONLY.union(OFlag::O_DIRECTORY).union(OFlag::O_NOFOLLOW).union(OFlag::O_CLOEXEC);

pub struct TreeWriter {
    root: OwnedFd,
    root_path: PathBuf,
    privileged: bool,
    /// The directories of the last entry's parent path, from the root down, each opened from
    /// the one above: consecutive entries mostly share all or most of it.
    open_dirs: Vec<(Vec<u8>, OwnedFd)>,
    pending_dirs: Vec<(Vec<u8>, Meta)>,
    buffer: Vec<u8>,
    /// With `digesting`, the digest of every file written, by inode: the tree hash then need
    /// not read the files again.
    digests: Option<FileDigests>,
    space: SpaceGuard,
}

/// The BLAKE3 digests of files' contents by (device, inode), as `tree_hash` uses them: appended
/// as the files are written (48 bytes each, where a map took up to three times as much while it
/// grew), then sorted once for lookups.
#[derive(Default)]
pub struct FileDigests {
    entries: Vec<((u64, u64), [u8; 32])>,
    sorted: bool,
}

impl FileDigests {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, file: (u64, u64), digest: [u8; 32]) {
        self.entries.push((file, digest));
        self.sorted = false;
    }

    /// Makes the digests ready for `get`. Of digests recorded for one inode, the last counts:
    /// a file replaced by an upper layer may leave its inode number to the new one.
    pub fn sort(&mut self) {
        self.entries.sort_by_key(|(file, _)| *file);
        self.entries.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                kept.1 = later.1;
            }
            same
        });
        self.sorted = true;
    }

    /// The digest of the file at (device, inode); the digests must be sorted.
    pub fn get(&self, file: &(u64, u64)) -> Option<&[u8; 32]> {
        assert!(self.sorted || self.entries.is_empty(), "FileDigests::get before sort");
        let at = self.entries.binary_search_by_key(file, |(f, _)| *f).ok()?;
        Some(&self.entries[at].1)
    }
}

fn os(name: &[u8]) -> &OsStr {
    OsStr::from_bytes(name)
}

fn split(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|b| *b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (b"", path),
    }
}

/// Opens `name` in `dir` as a directory, creating it or replacing a non-directory when `create`.
fn step(dir: BorrowedFd, name: &[u8], create: bool) -> io::Result<OwnedFd> {
    match openat(dir, os(name), DIR_FLAGS, Mode::empty()) {
        Ok(fd) => return Ok(fd),
        Err(Errno::ENOENT) if create => {}
        Err(Errno::ENOTDIR | Errno::ELOOP) if create => unlinkat(dir, os(name), UnlinkatFlags::NoRemoveDir)?,
        Err(e) => return Err(e.into()),
    }
    match mkdirat(dir, os(name), Mode::from_bits_truncate(0o755)) {
        Ok(()) | Err(Errno::EEXIST) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(openat(dir, os(name), DIR_FLAGS, Mode::empty())?)
}

/// Opens the directory at relative `path` below `root` one component at a time, never following
/// a symlink. With `create`, missing directories are made and non-directories replaced.
pub fn open_dir_at(root: BorrowedFd, path: &[u8], create: bool) -> io::Result<OwnedFd> {
    let mut current = openat(root, ".", DIR_FLAGS, Mode::empty())?;
    for part in path.split(|b| *b == b'/').filter(|p| !p.is_empty()) {
        if part == b".." {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "path climbs out with .."));
        }
        if part == b"." {
            continue;
        }
        current = step(current.as_fd(), part, create)?;
    }
    Ok(current)
}

/// Removes whatever `name` is in `dir`, a whole directory tree included, without following links.
pub fn remove_entry(dir: BorrowedFd, name: &[u8]) -> io::Result<()> {
    match unlinkat(dir, os(name), UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(Errno::EISDIR) => {
            let sub = openat(dir, os(name), DIR_FLAGS, Mode::empty())?;
            for child in list_dir(sub.as_fd())? {
                remove_entry(sub.as_fd(), &child)?;
            }
            drop(sub);
            match unlinkat(dir, os(name), UnlinkatFlags::RemoveDir) {
                Ok(()) | Err(Errno::ENOENT) => Ok(()),
                Err(e) => Err(e.into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// The names in a directory, without `.` and `..`.
pub fn list_dir(dir: BorrowedFd) -> io::Result<Vec<Vec<u8>>> {
    let fd = openat(dir, ".", DIR_FLAGS, Mode::empty())?;
    let mut d = nix::dir::Dir::from_fd(fd)?;
    let mut names = Vec::new();
    for entry in d.iter() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(name.to_vec());
        }
    }
    Ok(names)
}

/// Makes a new entry at `name` in `dir` with `create`; when something is there already (a lower
/// layer's entry), removes it, whatever it is, and creates again. Most entries are new, so the
/// removal is tried only when needed.
fn replacing<T>(dir: BorrowedFd, name: &[u8], create: impl Fn() -> nix::Result<T>) -> io::Result<T> {
    match create() {
        Err(Errno::EEXIST) => {
            remove_entry(dir, name)?;
            Ok(create()?)
        }
        other => Ok(other?),
    }
}

/// What an entry is now, when known: its owner and mode.
#[derive(Clone, Copy)]
struct Now {
    uid: u32,
    gid: u32,
    mode: u32,
}

/// Gives an entry its owner (as root), mode, attributes and time, sparing the calls that
/// would change nothing of what it is `now`, when known.
fn apply(privileged: bool, fd: BorrowedFd, meta: &Meta, now: Option<Now>) -> io::Result<()> {
    if privileged && now.map(|n| (n.uid, n.gid)) != Some((meta.uid, meta.gid)) {
        fchown(fd, Some(Uid::from_raw(meta.uid)), Some(Gid::from_raw(meta.gid)))?;
    }
    // After chown, which clears set-id bits (an entry is never created with them).
    if now.map(|n| n.mode & 0o7777) != Some(meta.mode & 0o7777) {
        fchmod(fd, Mode::from_bits_truncate(meta.mode & 0o7777))?;
    }
    set_xattrs(fd, &meta.xattrs)?;
    futimens(fd, &timespec(meta.mtime), &timespec(meta.mtime))?;
    Ok(())
}

fn timespec(secs: i64) -> TimeSpec {
    TimeSpec::new(secs, 0)
}

fn set_xattrs(fd: BorrowedFd, xattrs: &[(Vec<u8>, Vec<u8>)]) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    for (name, value) in xattrs {
        let cname =
            CString::new(name.clone()).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "NUL in xattr name"))?;
        // SAFETY: both pointers are valid for the lengths given and outlive the call.
        let rc = unsafe { libc::fsetxattr(fd.as_raw_fd(), cname.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
        if rc != 0 {
            let err = io::Error::last_os_error();
            // A filesystem without xattrs (or without that namespace) keeps the file without them.
            if !matches!(err.raw_os_error(), Some(libc::ENOTSUP)) {
                return Err(err);
            }
        }
    }
    Ok(())
}

impl TreeWriter {
    /// Writes below `root`, which must be an existing directory. Owners and device nodes are
    /// kept only when running as root.
    pub fn new(root: &Path) -> io::Result<Self> {
        let root_fd = nix::fcntl::open(root, DIR_FLAGS, Mode::empty())?;
        Ok(TreeWriter {
            root: root_fd,
            root_path: root.to_path_buf(),
            privileged: nix::unistd::geteuid().is_root(),
            open_dirs: Vec::new(),
            pending_dirs: Vec::new(),
            buffer: vec![0; 256 * 1024],
            digests: None,
            space: SpaceGuard::default(),
        })
    }

    /// Records the digest of every file it writes (see `FileDigests`).
    pub fn digesting(mut self) -> Self {
        self.digests = Some(FileDigests::new());
        self
    }

    pub fn root_path(&self) -> &Path {
        &self.root_path
    }

    /// Opens the directory at clean relative `path`, never following a symlink.
    pub fn open_dir(&self, path: &[u8], create: bool) -> io::Result<OwnedFd> {
        open_dir_at(self.root.as_fd(), path, create)
    }

    /// The parent directory of `path`, created as needed, and the entry's name in it.
    fn parent_of(&mut self, path: &[u8]) -> io::Result<(BorrowedFd<'_>, Vec<u8>)> {
        let (parent, name) = split(path);
        if name.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty entry name"));
        }
        let fd = self.cursor_to(parent, true)?;
        Ok((fd, name.to_vec()))
    }

    /// Opens the directory at `path` (created as needed with `create`), opening only the
    /// components that differ from the last path asked for. Whatever was open below it is
    /// closed: an entry in it may replace one of those directories.
    fn cursor_to(&mut self, path: &[u8], create: bool) -> io::Result<BorrowedFd<'_>> {
        let mut depth = 0;
        for part in path.split(|b| *b == b'/').filter(|p| !p.is_empty() && *p != b".") {
            if part == b".." {
                self.open_dirs.clear();
                return Err(io::Error::new(io::ErrorKind::InvalidInput, "path climbs out with .."));
            }
            if self.open_dirs.get(depth).is_some_and(|(open, _)| open == part) {
                depth += 1;
                continue;
            }
            self.open_dirs.truncate(depth);
            let above = self.open_dirs.last().map_or(self.root.as_fd(), |(_, fd)| fd.as_fd());
            let fd = step(above, part, create)?;
            self.open_dirs.push((part.to_vec(), fd));
            depth += 1;
        }
        self.open_dirs.truncate(depth);
        Ok(self.open_dirs.last().map_or(self.root.as_fd(), |(_, fd)| fd.as_fd()))
    }

    pub fn dir(&mut self, path: &[u8], meta: Meta) -> io::Result<()> {
        let privileged = self.privileged;
        let group_id = meta.mode & libc::S_ISGID;
        if path.is_empty() {
            if privileged && group_id != 0 {
                fchown(self.root.as_fd(), None, Some(Gid::from_raw(meta.gid)))?;
            }
            fchmod(self.root.as_fd(), Mode::from_bits_truncate(0o700 | group_id))?;
        } else {
            let (dir, name) = self.parent_of(path)?;
            let now = match fstatat(dir, os(&name), AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => Some((st.st_mode & libc::S_ISGID, st.st_gid)),
                Ok(_) => {
                    remove_entry(dir, &name)?;
                    mkdirat(dir, os(&name), Mode::from_bits_truncate(0o700))?;
                    None
                }
                Err(Errno::ENOENT) => {
                    mkdirat(dir, os(&name), Mode::from_bits_truncate(0o700))?;
                    None
                }
                Err(e) => return Err(e.into()),
            };
            // A directory made in this one before the end (one a layer implies without listing
            // it) takes its group and set-group-ID bit from it, as the kernel gives them when
            // umoci applies each directory's metadata as it comes: those two are set now.
            if privileged && group_id != 0 && now.is_none_or(|(_, gid)| gid != meta.gid) {
                fchownat(dir, os(&name), None, Some(Gid::from_raw(meta.gid)), AtFlags::AT_SYMLINK_NOFOLLOW)?;
            }
            if now.is_none_or(|(bit, _)| bit != group_id) {
                fchmodat(dir, os(&name), Mode::from_bits_truncate(0o700 | group_id), FchmodatFlags::FollowSymlink)?;
            }
        }
        // Modes and times wait for the end, so that a read-only directory can still be filled.
        self.pending_dirs.push((path.to_vec(), meta));
        Ok(())
    }

    pub async fn file<R: AsyncRead + Unpin>(&mut self, path: &[u8], meta: &Meta, data: &mut R) -> io::Result<()> {
        let (dir, name) = self.parent_of(path)?;
        let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        // Created with its own permission bits (less the umask), which spares most files a
        // chmod: it never allows more than it will at the end (set-id bits come after chown),
        // and the directories it is written in are 0700 until then.
        let created = Mode::from_bits_truncate(meta.mode & 0o777);
        let fd = replacing(dir, &name, || openat(dir, os(&name), flags, created))?;
        let mut file = File::from(fd);
        let mut buffer = std::mem::take(&mut self.buffer);
        let mut hasher = self.digests.as_ref().map(|_| FileHasher::new());
        let space = &mut self.space;
        let copied = async {
            loop {
                let n = data.read(&mut buffer).await?;
                if n == 0 {
                    return Ok::<(), io::Error>(());
                }
                space.write_all(&mut file, &buffer[..n])?;
                if let Some(h) = hasher.as_mut() {
                    h.update(&buffer[..n]);
                }
            }
        }
        .await;
        self.buffer = buffer;
        copied?;
        // The digest is filed by inode; the same stat tells whether the file's owner and mode
        // are already the ones it should have (most are root's, as created), sparing calls.
        let stat = match hasher {
            Some(_) => Some(nix::sys::stat::fstat(file.as_fd())?),
            None => None,
        };
        let now = stat.map(|st| Now { uid: st.st_uid, gid: st.st_gid, mode: st.st_mode });
        apply(self.privileged, file.as_fd(), meta, now)?;
        if let (Some(digests), Some(h), Some(st)) = (self.digests.as_mut(), hasher, stat) {
            digests.insert((st.st_dev, st.st_ino), h.finish());
        }
        Ok(())
    }

    pub fn symlink(&mut self, path: &[u8], target: &[u8], meta: &Meta) -> io::Result<()> {
        let privileged = self.privileged;
        let (dir, name) = self.parent_of(path)?;
        replacing(dir, &name, || symlinkat(os(target), dir, os(&name)))?;
        if privileged {
            fchownat(
                dir,
                os(&name),
                Some(Uid::from_raw(meta.uid)),
                Some(Gid::from_raw(meta.gid)),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )?;
        }
        let t = timespec(meta.mtime);
        utimensat(dir, os(&name), &t, &t, UtimensatFlags::NoFollowSymlink)?;
        Ok(())
    }

    /// Links `path` to the earlier entry `target`; both are relative to the root.
    pub fn hardlink(&mut self, path: &[u8], target: &[u8]) -> io::Result<()> {
        let (target_parent, target_name) = split(target);
        let target_dir = self.open_dir(target_parent, false)?;
        let (dir, name) = self.parent_of(path)?;
        // Flags 0: a link to a symlink links the symlink itself, never what it points to.
        replacing(dir, &name, || linkat(target_dir.as_fd(), os(target_name), dir, os(&name), AtFlags::empty()))?;
        Ok(())
    }

    /// Creates a device node or FIFO. Device nodes need root; without it they are left out.
    pub fn special(&mut self, path: &[u8], kind: Special, meta: &Meta) -> io::Result<()> {
        let privileged = self.privileged;
        let (sflag, dev) = match kind {
            Special::Char(dev) => (SFlag::S_IFCHR, dev),
            Special::Block(dev) => (SFlag::S_IFBLK, dev),
            Special::Fifo => (SFlag::S_IFIFO, 0),
        };
        if !privileged && sflag != SFlag::S_IFIFO {
            return Ok(());
        }
        let (dir, name) = self.parent_of(path)?;
        replacing(dir, &name, || mknodat(dir, os(&name), sflag, Mode::from_bits_truncate(0o600), dev))?;
        if privileged {
            fchownat(
                dir,
                os(&name),
                Some(Uid::from_raw(meta.uid)),
                Some(Gid::from_raw(meta.gid)),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )?;
        }
        // The node was made here a moment ago and cannot be a symlink, so following is harmless.
        fchmodat(dir, os(&name), Mode::from_bits_truncate(meta.mode & 0o7777), FchmodatFlags::FollowSymlink)?;
        let t = timespec(meta.mtime);
        utimensat(dir, os(&name), &t, &t, UtimensatFlags::NoFollowSymlink)?;
        Ok(())
    }

    /// Removes `path` and all below it, if it is there (a whiteout).
    pub fn remove(&mut self, path: &[u8]) -> io::Result<()> {
        self.open_dirs.clear();
        let (parent, name) = split(path);
        if name.is_empty() {
            return Ok(());
        }
        match self.open_dir(parent, false) {
            Ok(dir) => remove_entry(dir.as_fd(), name),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Empties the directory `path` but for the entries `keep` names (an opaque whiteout hides
    /// only what the layers below wrote).
    pub fn clear_dir(&mut self, path: &[u8], keep: impl Fn(&[u8]) -> bool) -> io::Result<()> {
        self.open_dirs.clear();
        let dir = match self.open_dir(path, false) {
            Ok(dir) => dir,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP)) => return Ok(()),
            Err(e) => return Err(e),
        };
        for name in list_dir(dir.as_fd())? {
            let full = if path.is_empty() { name.clone() } else { [path, b"/", &name].concat() };
            if !keep(&full) {
                remove_entry(dir.as_fd(), &name)?;
            }
        }
        Ok(())
    }

    /// Gives directories their modes, owners and times, each after every directory below it,
    /// once nothing more is written into them. A directory listed by several layers gets what
    /// the last one says.
    pub fn finish(mut self) -> io::Result<FileDigests> {
        self.open_dirs.clear();
        let mut dirs = std::mem::take(&mut self.pending_dirs);
        // Stable: of the entries for one directory, the last listed comes first in reverse.
        dirs.sort_by(|a, b| a.0.cmp(&b.0));
        let mut done: Option<&[u8]> = None;
        for (path, meta) in dirs.iter().rev() {
            if done == Some(path.as_slice()) {
                continue;
            }
            done = Some(path);
            let privileged = self.privileged;
            match self.cursor_to(path, false) {
                Ok(fd) => apply(privileged, fd, meta, None)?,
                // Removed or replaced by an upper layer since.
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP)) => continue,
                Err(e) => return Err(e),
            }
        }
        let mut digests = self.digests.take().unwrap_or_default();
        digests.sort();
        Ok(digests)
    }
}
