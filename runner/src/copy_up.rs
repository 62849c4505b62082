//! Docker's volume semantics for images converted from Docker: a mount point given no volume
//! starts with what the image holds there, owned and moded as the image's directory is. rkt's
//! stage1 did this for images carrying the `appc.io/docker/repository` annotation; appc images
//! get a plain empty volume.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::{utimensat, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;

/// The annotation docker2aci gives converted images.
pub const DOCKER_ANNOTATION: &str = "appc.io/docker/repository";

/// Copies the directory at `target` inside `image_root` into the empty `volume`, which then
/// takes that directory's owner and mode. Copies nothing and returns false when the image has
/// no directory there: a missing path, a file, or a symlink on the way (which the volume's
/// mount replaces rather than follows, so nothing outside the image is ever read).
pub fn copy_up(image_root: &Path, target: &str, volume: &Path) -> io::Result<bool> {
    let mut source = image_root.to_path_buf();
    for part in target.split('/').filter(|p| !p.is_empty() && *p != ".") {
        if part == ".." {
            return Ok(false);
        }
        source.push(part);
        match fs::symlink_metadata(&source) {
            Ok(meta) if meta.is_dir() => {}
            _ => return Ok(false),
        }
    }
    if source == image_root {
        return Ok(false);
    }
    copy_tree(&source, volume)?;
    let meta = fs::symlink_metadata(&source)?;
    set_owner_mode_time(volume, &source, &meta)?;
    Ok(true)
}

/// Everything below `from` into the existing directory `to`: files, directories, symlinks,
/// devices and fifos with their owners, modes, extended attributes and times; hard links stay
/// linked. Sockets, which no image can hold usefully, are left out.
fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    let mut pending = vec![(from.to_path_buf(), to.to_path_buf())];
    // Directories get their times last: filling them changes them.
    let mut dirs: Vec<(PathBuf, fs::Metadata)> = Vec::new();
    let mut linked: HashMap<(u64, u64), PathBuf> = HashMap::new();
    while let Some((src_dir, dst_dir)) = pending.pop() {
        for entry in fs::read_dir(&src_dir)? {
            let entry = entry?;
            let (src, dst) = (entry.path(), dst_dir.join(entry.file_name()));
            let meta = fs::symlink_metadata(&src)?;
            let kind = meta.file_type();
            if kind.is_dir() {
                fs::create_dir(&dst)?;
                set_owner_mode(&dst, &src, &meta)?;
                dirs.push((dst.clone(), meta));
                pending.push((src, dst));
                continue;
            }
            if meta.nlink() > 1 {
                if let Some(first) = linked.get(&(meta.dev(), meta.ino())) {
                    fs::hard_link(first, &dst)?;
                    continue;
                }
                linked.insert((meta.dev(), meta.ino()), dst.clone());
            }
            if kind.is_file() {
                let mut input = File::open(&src)?;
                let mut output = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&dst)?;
                io::copy(&mut input, &mut output)?;
            } else if kind.is_symlink() {
                std::os::unix::fs::symlink(fs::read_link(&src)?, &dst)?;
            } else {
                let sflag = match meta.mode() & libc::S_IFMT {
                    libc::S_IFCHR => SFlag::S_IFCHR,
                    libc::S_IFBLK => SFlag::S_IFBLK,
                    libc::S_IFIFO => SFlag::S_IFIFO,
                    _ => continue,
                };
                let perm = nix::sys::stat::Mode::from_bits_truncate(0o600);
                nix::sys::stat::mknod(&dst, sflag, perm, meta.rdev())?;
            }
            set_owner_mode_time(&dst, &src, &meta)?;
        }
    }
    for (dir, meta) in dirs.iter().rev() {
        set_times(dir, meta)?;
    }
    Ok(())
}

/// Owner first: changing it clears set-user-ID and set-group-ID bits, and file capabilities,
/// which come with the extended attributes after it.
fn set_owner_mode(path: &Path, source: &Path, meta: &fs::Metadata) -> io::Result<()> {
    std::os::unix::fs::lchown(path, Some(meta.uid()), Some(meta.gid()))?;
    if !meta.file_type().is_symlink() {
        fs::set_permissions(path, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        copy_xattrs(source, path)?;
    }
    Ok(())
}

/// The image's extended attributes of a file or directory (`user.*`, `security.capability`),
/// as the tree writer gave them. A filesystem without them keeps the copy without them, as
/// the tree writer does.
fn copy_xattrs(from: &Path, to: &Path) -> io::Result<()> {
    for (name, value) in rkt_store::tree_hash::xattrs_of(from) {
        let name = CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "NUL in xattr name"))?;
        let path = CString::new(to.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
        // SAFETY: both strings are NUL-terminated and the value is valid for its length.
        let rc = unsafe { libc::lsetxattr(path.as_ptr(), name.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
        if rc != 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::ENOTSUP) {
                return Err(err);
            }
        }
    }
    Ok(())
}

fn set_owner_mode_time(path: &Path, source: &Path, meta: &fs::Metadata) -> io::Result<()> {
    set_owner_mode(path, source, meta)?;
    set_times(path, meta)
}

fn set_times(path: &Path, meta: &fs::Metadata) -> io::Result<()> {
    let atime = TimeSpec::new(meta.atime(), meta.atime_nsec());
    let mtime = TimeSpec::new(meta.mtime(), meta.mtime_nsec());
    Ok(utimensat(nix::fcntl::AT_FDCWD, path, &atime, &mtime, UtimensatFlags::NoFollowSymlink)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(root: &Path) {
        fs::create_dir_all(root.join("data/sub")).unwrap();
        fs::write(root.join("data/seed"), b"seeded").unwrap();
        fs::set_permissions(root.join("data/seed"), fs::Permissions::from_mode(0o640)).unwrap();
        fs::hard_link(root.join("data/seed"), root.join("data/sub/again")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("data/link")).unwrap();
        fs::set_permissions(root.join("data"), fs::Permissions::from_mode(0o1777)).unwrap();
        fs::create_dir(root.join("real")).unwrap();
        fs::write(root.join("real/secret"), b"outside").unwrap();
        std::os::unix::fs::symlink("/real", root.join("via-link")).unwrap();
        fs::write(root.join("file"), b"not a directory").unwrap();
    }

    /// A temporary directory holding an image tree (`tree`) and an empty volume beside it.
    fn fixture() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let (image, volume) = (dir.path().join("image"), dir.path().join("volume"));
        tree(&image);
        fs::create_dir(&volume).unwrap();
        (dir, image, volume)
    }

    #[test]
    fn the_image_directory_is_copied_with_its_modes_and_links() {
        let (_dir, image, volume) = fixture();
        assert!(copy_up(&image, "/data", &volume).unwrap());
        assert_eq!(fs::read(volume.join("seed")).unwrap(), b"seeded");
        assert_eq!(fs::symlink_metadata(volume.join("seed")).unwrap().mode() & 0o7777, 0o640);
        assert_eq!(fs::read_link(volume.join("link")).unwrap(), Path::new("/etc/passwd"));
        let (a, b) = (fs::metadata(volume.join("seed")).unwrap(), fs::metadata(volume.join("sub/again")).unwrap());
        assert_eq!(a.ino(), b.ino());
        assert_eq!(fs::metadata(&volume).unwrap().mode() & 0o7777, 0o1777);
        let (theirs, ours) = (fs::metadata(image.join("data/sub")).unwrap(), fs::metadata(volume.join("sub")).unwrap());
        assert_eq!(theirs.mtime(), ours.mtime());
    }

    #[test]
    fn nothing_is_copied_through_a_symlink_or_from_a_file() {
        let (_dir, image, volume) = fixture();
        for target in ["/via-link", "/via-link/", "/file", "/missing/dir", "/", "/data/../real"] {
            assert!(!copy_up(&image, target, &volume).unwrap(), "{target}");
        }
        assert_eq!(fs::read_dir(&volume).unwrap().count(), 0);
    }

    fn set_xattr(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
        let (path, name) = (CString::new(path.as_os_str().as_bytes()).unwrap(), CString::new(name).unwrap());
        // SAFETY: NUL-terminated strings and a value valid for its length.
        match unsafe { libc::lsetxattr(path.as_ptr(), name.as_ptr(), value.as_ptr().cast(), value.len(), 0) } {
            0 => Ok(()),
            _ => Err(io::Error::last_os_error()),
        }
    }

    fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
        let name = name.as_bytes();
        rkt_store::tree_hash::xattrs_of(path).into_iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// A file capability (root only) survives the owner change that would clear it, and
    /// `user.*` attributes of files and directories come along.
    #[test]
    fn extended_attributes_come_along() {
        let (_dir, image, volume) = fixture();
        if let Err(e) = set_xattr(&image.join("data/sub"), "user.origin", b"dir") {
            eprintln!("skipping: this filesystem keeps no user xattrs ({e})");
            return;
        }
        set_xattr(&image.join("data/seed"), "user.origin", b"file").unwrap();
        set_xattr(&image.join("data"), "user.origin", b"volume").unwrap();
        // VFS_CAP_REVISION_2 with the effective flag, permitting CAP_NET_BIND_SERVICE.
        let cap: Vec<u8> = [0x0200_0001u32, 1 << 10, 0, 0, 0].iter().flat_map(|w| w.to_le_bytes()).collect();
        let root = nix::unistd::geteuid().is_root();
        if root {
            fs::write(image.join("data/ping"), b"#!/bin/sh\n").unwrap();
            std::os::unix::fs::chown(image.join("data/ping"), Some(1000), Some(1000)).unwrap();
            set_xattr(&image.join("data/ping"), "security.capability", &cap).unwrap();
        }
        assert!(copy_up(&image, "/data", &volume).unwrap());
        assert_eq!(xattr(&volume.join("sub"), "user.origin").as_deref(), Some(&b"dir"[..]));
        assert_eq!(xattr(&volume.join("seed"), "user.origin").as_deref(), Some(&b"file"[..]));
        assert_eq!(xattr(&volume, "user.origin").as_deref(), Some(&b"volume"[..]));
        if root {
            assert_eq!(xattr(&volume.join("ping"), "security.capability"), Some(cap));
            assert_eq!(fs::metadata(volume.join("ping")).unwrap().uid(), 1000);
        } else {
            eprintln!("not checked: file capabilities need root");
        }
    }
}
