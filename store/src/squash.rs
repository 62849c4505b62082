//! `rkt image export` of an image with dependencies: one ACI holding the rendered tree, so that
//! it can be fetched where none of its dependencies are (docker2aci's squashed mode).

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use crate::appc::ImageManifest;
use crate::error::{IoContext, Result, StoreError};
use crate::image_id::ImageId;
use crate::store::{write_replacing, Store};
use crate::tar_out::{finish, write_entry, OutEntry};
use crate::tmp_area::Claim;
use crate::tree_hash::{sorted_names, xattrs};

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

/// Every entry below `root` as `rootfs/…`, in sorted order, hard links kept as links.
async fn write_tree(out: &mut tokio::fs::File, root: &Path) -> Result<()> {
    let mut seen: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    let mut stack = vec![Vec::<u8>::new()];
    while let Some(rel) = stack.pop() {
        let path = root.join(std::ffi::OsStr::from_bytes(&rel));
        let meta = path.symlink_metadata().at(&path)?;
        let ft = meta.file_type();
        let name = if rel.is_empty() { b"rootfs".to_vec() } else { [b"rootfs/".as_slice(), &rel].concat() };
        let attrs = if ft.is_symlink() { Vec::new() } else { xattrs(&path) };
        let mut link = Vec::new();
        let mut kind = if ft.is_dir() {
            b'5'
        } else if ft.is_symlink() {
            link = std::fs::read_link(&path).at(&path)?.into_os_string().into_encoded_bytes();
            b'2'
        } else if ft.is_char_device() {
            b'3'
        } else if ft.is_block_device() {
            b'4'
        } else if ft.is_fifo() {
            b'6'
        } else if ft.is_file() {
            b'0'
        } else {
            continue;
        };
        if kind == b'0' && meta.nlink() > 1 {
            match seen.get(&(meta.dev(), meta.ino())) {
                Some(first) => {
                    link = first.clone();
                    kind = b'1';
                }
                None => {
                    seen.insert((meta.dev(), meta.ino()), name.clone());
                }
            }
        }
        let rdev = meta.rdev();
        let entry = OutEntry {
            path: &name,
            kind,
            mode: meta.mode() & 0o7777,
            uid: u64::from(meta.uid()),
            gid: u64::from(meta.gid()),
            mtime: meta.mtime().max(0) as u64,
            size: if kind == b'0' { meta.len() } else { 0 },
            link: &link,
            dev: (nix::sys::stat::major(rdev) as u32, nix::sys::stat::minor(rdev) as u32),
            xattrs: &attrs,
        };
        if kind == b'0' {
            let mut file = tokio::fs::File::open(&path).await.at(&path)?;
            write_entry(out, &entry, &mut file).await.at(&path)?;
        } else {
            write_entry(out, &entry, &mut tokio::io::empty()).await.at(&path)?;
        }
        if ft.is_dir() {
            for child in sorted_names(&path)?.into_iter().rev() {
                stack.push(if rel.is_empty() { child } else { [rel.as_slice(), b"/", &child].concat() });
            }
        }
    }
    Ok(())
}
