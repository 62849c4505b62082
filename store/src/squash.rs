//! `rkt image export` of an image with dependencies: one ACI holding the rendered tree, so that
//! it can be fetched where none of its dependencies are (docker2aci's squashed mode).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

use nix::fcntl::{openat, readlinkat, AtFlags, OFlag};
use nix::sys::stat::{fstatat, Mode};

use crate::appc::ImageManifest;
use crate::error::{IoContext, Result, StoreError};
use crate::image_id::ImageId;
use crate::store::{write_replacing, Store};
use crate::tar_out::{finish, write_entry, OutEntry};
use crate::tmp_area::Claim;
use crate::tree_hash::{named_from, xattrs_into};
use crate::tree_writer::list_dir;

impl Store {
    /// Writes `id` to `out` as a single ACI: its own bytes when it has no dependencies (they then
    /// hash to its ID), else its rendered tree with the top image's manifest, less dependencies.
    pub async fn export_squashed(&self, id: &ImageId, out: &Path, overwrite: bool) -> Result<()> {
        let manifest = self.manifest(id)?;
        if manifest.dependencies.is_empty() {
            return self.export(id, out, overwrite).await;
        }
        if !overwrite && out.symlink_metadata().is_ok() {
            return Err(StoreError::Invalid(format!("{} already exists (use --overwrite)", out.display())));
        }
        let layers = self.dependency_layers(id)?;
        let tmp = self.tmp_dir();
        let claim = Claim::new(&tmp, "squash-").at(&tmp)?;
        std::fs::create_dir(&claim.path).at(&claim.path)?;
        self.render_layers(&layers, &claim.path, true, false).await?;
        let squashed = ImageManifest { dependencies: Vec::new(), path_whitelist: Vec::new(), ..manifest };
        let json = serde_json::to_vec(&squashed).map_err(|e| StoreError::Invalid(e.to_string()))?;
        write_replacing(out, |mut file, temp| async move {
            write_entry(&mut file, &OutEntry::plain(b"manifest", b'0', 0o644, json.len() as u64), &mut &json[..])
                .await
                .at(&temp)?;
            write_tree(&mut file, &claim.path).await?;
            finish(&mut file).await.at(&temp)?;
            Ok(file)
        })
        .await
    }
}

/// Every entry below `root` as `rootfs/…`, in sorted order, hard links kept as links. Entries
/// are reached from `root`'s fd by their path inside it (at most 4094 bytes, as imports check):
/// with `root`'s own path in front, a deep entry's would be longer than PATH_MAX.
async fn write_tree(out: &mut tokio::fs::File, root: &Path) -> Result<()> {
    let root_fd = open_dir_at(None, b".", root)?;
    let mut seen: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    let mut stack = vec![Vec::<u8>::new()];
    let mut xattr_names = Vec::new();
    while let Some(rel) = stack.pop() {
        let path = root.join(OsStr::from_bytes(&rel));
        let here: &[u8] = if rel.is_empty() { b"." } else { &rel };
        let st = fstatat(&root_fd, OsStr::from_bytes(here), AtFlags::AT_SYMLINK_NOFOLLOW)
            .map_err(std::io::Error::from)
            .at(&path)?;
        let format = st.st_mode & libc::S_IFMT;
        let name = if rel.is_empty() { b"rootfs".to_vec() } else { [b"rootfs/".as_slice(), &rel].concat() };
        let mut link = Vec::new();
        let mut kind = match format {
            libc::S_IFDIR => b'5',
            libc::S_IFLNK => {
                link =
                    readlinkat(&root_fd, OsStr::from_bytes(here)).map_err(std::io::Error::from).at(&path)?.into_vec();
                b'2'
            }
            libc::S_IFCHR => b'3',
            libc::S_IFBLK => b'4',
            libc::S_IFIFO => b'6',
            libc::S_IFREG => b'0',
            _ => continue,
        };
        let attrs = match kind {
            b'2' => Vec::new(),
            _ => entry_xattrs(&root_fd, root, &rel, &mut xattr_names)?,
        };
        if kind == b'0' && st.st_nlink > 1 {
            match seen.get(&(st.st_dev, st.st_ino)) {
                Some(first) => {
                    link = first.clone();
                    kind = b'1';
                }
                None => {
                    seen.insert((st.st_dev, st.st_ino), name.clone());
                }
            }
        }
        let entry = OutEntry {
            path: &name,
            kind,
            mode: st.st_mode & 0o7777,
            uid: u64::from(st.st_uid),
            gid: u64::from(st.st_gid),
            mtime: st.st_mtime,
            size: if kind == b'0' { st.st_size as u64 } else { 0 },
            link: &link,
            dev: (nix::sys::stat::major(st.st_rdev) as u32, nix::sys::stat::minor(st.st_rdev) as u32),
            xattrs: &attrs,
        };
        if kind == b'0' {
            let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
            let fd = openat(&root_fd, OsStr::from_bytes(here), flags, Mode::empty())
                .map_err(std::io::Error::from)
                .at(&path)?;
            let mut file = tokio::fs::File::from_std(std::fs::File::from(fd));
            write_entry(out, &entry, &mut file).await.at(&path)?;
        } else {
            write_entry(out, &entry, &mut tokio::io::empty()).await.at(&path)?;
        }
        if format == libc::S_IFDIR {
            let dir = open_dir_at(Some(&root_fd), here, &path)?;
            let mut children = list_dir(dir.as_fd()).at(&path)?;
            children.sort();
            for child in children.into_iter().rev() {
                stack.push(if rel.is_empty() { child } else { [rel.as_slice(), b"/", &child].concat() });
            }
        }
    }
    Ok(())
}

/// The directory `rel` of `base` (or the path `path` itself without a base).
fn open_dir_at(base: Option<&OwnedFd>, rel: &[u8], path: &Path) -> Result<OwnedFd> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    match base {
        Some(base) => openat(base, OsStr::from_bytes(rel), flags, Mode::empty()),
        None => nix::fcntl::open(path, flags, Mode::empty()),
    }
    .map_err(std::io::Error::from)
    .at(path)
}

/// The extended attributes of the entry `rel` below `root`. A path too long to name whole is
/// named from its directory's fd.
fn entry_xattrs(root_fd: &OwnedFd, root: &Path, rel: &[u8], names: &mut Vec<u8>) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let path = root.join(OsStr::from_bytes(rel));
    if path.as_os_str().len() < libc::PATH_MAX as usize {
        return Ok(xattrs_into(&path, names));
    }
    let (parent, name) = match rel.iter().rposition(|b| *b == b'/') {
        Some(at) => (&rel[..at], &rel[at + 1..]),
        None => (b".".as_slice(), rel),
    };
    let dir = open_dir_at(Some(root_fd), parent, &path)?;
    Ok(xattrs_into(&named_from(&dir, name), names))
}
