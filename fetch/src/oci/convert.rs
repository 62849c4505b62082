//! Docker and OCI layers as ACIs: each layer becomes an ACI of its own, named by its chain ID
//! and depending on the layer below, so that images share layers in the store and a layer once
//! stored is never converted again. Whiteouts stay in the layer; rendering applies them.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use futures_core::Stream;
use rkt_store::{AciBuilder, BroughtIn, CopyError, EntryError, ImageId, Store, StoreError};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, ReadBuf};

use super::container::{LayerBlob, ReadAgain, Reader};
use super::last_entries::LastEntries;
use super::progressive::LayerOrder;
use super::sparse::sparse_records;
use super::unpadded_end::UnpaddedEnd;
use super::OciError;
use rkt_store::tar_out::OutEntry;

/// How much of a layer's uncompressed stream is decoded at once.
const PLAIN_BUFFER: usize = 128 * 1024;

/// What may follow a layer's end-of-archive marker (tar pads to 10 KiB records).
const MAX_TRAILING: u64 = 1 << 20;

/// Hashes what passes through it; the digest stays readable after the reader is given away.
pub struct HashReader<R> {
    inner: R,
    state: Arc<Mutex<Sha256>>,
}

impl<R> HashReader<R> {
    pub fn new(inner: R) -> (Self, Arc<Mutex<Sha256>>) {
        let state = Arc::new(Mutex::new(Sha256::new()));
        (HashReader { inner, state: state.clone() }, state)
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for HashReader<R> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        self.state.lock().expect("not poisoned").update(&buf.filled()[before..]);
        Poll::Ready(Ok(()))
    }
}

pub fn hex_of(state: &Arc<Mutex<Sha256>>) -> String {
    let digest = state.lock().expect("not poisoned").clone().finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// A layer's entry names and hard link targets are relative to the image's root even when
/// written absolute: Docker, containerd and umoci read them so, and `umoci insert` names the
/// layer's root `/`. Leading slashes go; `..` is still refused, so nothing lands outside.
fn clean(raw: &[u8]) -> Result<Option<Vec<u8>>, OciError> {
    let relative = &raw[raw.iter().take_while(|b| **b == b'/').count()..];
    rkt_store::aci::clean_entry_path(relative).map_err(|e| OciError::Invalid(format!("layer {e}")))
}

/// Where a layer's content comes from.
pub enum LayerSource {
    /// Its blob.
    Blob(LayerBlob),
    /// A stored layer ACI with the same diff ID, under another chain: nothing is fetched unless
    /// it turns out damaged, and then the blob is.
    Stored(ImageId, LayerBlob),
}

/// A layer imported into the store.
pub struct ImportedLayer {
    pub id: ImageId,
    /// What to take back should the image fail: the layer, when this import brought it in.
    pub brought_in: Option<BroughtIn>,
    /// The stored layer it was to be copied from, found damaged: its content was fetched.
    pub damaged: Option<DamagedImage>,
}

/// A stored image found damaged on the way, and what was wrong with it.
#[derive(Debug, Clone)]
pub struct DamagedImage {
    pub id: ImageId,
    pub problem: String,
}

/// Converts one layer into an ACI and imports it. `diff_id` is the expected digest of the
/// blob's uncompressed tar. The ACI is finished only after the blob's digests check out, so a
/// mismatch leaves nothing stored.
pub async fn import_layer(
    store: &Store,
    source: LayerSource,
    diff_id: &str,
    manifest: &[u8],
    render: Option<(&LayerOrder, usize)>,
) -> Result<ImportedLayer, OciError> {
    let refused = |source| OciError::Layer { diff_id: diff_id.into(), source };
    // A render follows a conversion as it is written; a copy, which may turn out damaged only
    // at its end, it reads once stored.
    let converting = || -> Result<AciBuilder, OciError> {
        let aci = store.build_aci(manifest).map_err(refused)?;
        if let Some((order, index)) = render {
            order.started(index, aci.follow().map_err(refused)?);
        }
        Ok(aci)
    };
    let mut damaged = None;
    let aci = match source {
        LayerSource::Blob(blob) => convert_whole(converting, blob, diff_id).await?,
        LayerSource::Stored(donor, blob) => {
            let mut aci = store.build_aci(manifest).map_err(refused)?;
            match aci.copy_rootfs_of(&donor).await {
                Ok(()) => aci,
                Err(CopyError::Store(e)) => return Err(refused(e)),
                Err(CopyError::Damaged(e)) => {
                    let problem = match e {
                        StoreError::Corrupt { .. } => "its data no longer hashes to its ID".to_string(),
                        other => other.to_string(),
                    };
                    damaged = Some(DamagedImage { id: donor, problem });
                    drop(aci);
                    convert_whole(converting, blob, diff_id).await?
                }
            }
        }
    };
    let imported = aci.finish(false).map_err(refused)?;
    Ok(ImportedLayer { brought_in: imported.brought_in(), id: imported.id, damaged })
}

/// Converts a layer from its blob. A layer whose own root entry comes after other entries, with
/// other metadata than the root was given, is converted a second time with that root first:
/// the ACI's `rootfs` entry goes before the entries under it, and the layer's root is the image
/// root's, as umoci and podman apply it wherever it comes. A layer that gives a path again,
/// otherwise, is read once more to learn each path's last entry, and converted again with only
/// what those leave (see `last_entries`). Each pass reads the blob anew, and checks its digests.
async fn convert_whole(
    start: impl Fn() -> Result<AciBuilder, OciError>,
    blob: LayerBlob,
    diff_id: &str,
) -> Result<AciBuilder, OciError> {
    let digest = blob.digest.as_deref();
    let mut first_reader = Some(blob.reader);
    let mut root: Option<LayerRoot> = None;
    let mut last: Option<LastEntries> = None;
    loop {
        let reader = match first_reader.take() {
            Some(reader) => reader,
            None => (blob.reopen)(ReadAgain::Perhaps).await?,
        };
        // Dropped unfinished, an earlier pass's ACI leaves nothing, and a render following it stops.
        let mut aci = start()?;
        let entries = match &root {
            Some(root) => {
                aci.root(&root.entry()).map_err(|source| OciError::Layer { diff_id: diff_id.into(), source })?;
                RootEntries::Skip
            }
            None => RootEntries::Apply,
        };
        let repeats = match &last {
            Some(last) => Repeats::KeepLast(last),
            None => Repeats::Compare,
        };
        match convert_layer(Some(&mut aci), reader, digest, diff_id, entries, repeats).await {
            Ok(None) => return Ok(aci),
            Ok(Some(late)) => root = Some(late),
            Err(OciError::GivenAgain { .. }) if last.is_none() => {
                drop(aci);
                let mut found = LastEntries::new();
                let reader = (blob.reopen)(ReadAgain::Surely).await?;
                convert_layer(None, reader, digest, diff_id, RootEntries::Skip, Repeats::Find(&mut found)).await?;
                last = Some(found);
            }
            Err(e) => return Err(e),
        }
    }
}

/// What a conversion does with an entry whose path came before in the layer.
enum Repeats<'a> {
    /// Leaves it out when it is the same entry again; any other is `OciError::GivenAgain`.
    Compare,
    /// Writes nothing: records where each path comes.
    Find(&'a mut LastEntries),
    /// Writes only the entries the layer's last entries leave.
    KeepLast(&'a LastEntries),
}

/// What a conversion does with the layer's own root entries (`./`).
#[derive(Clone, Copy, PartialEq)]
enum RootEntries {
    /// Gives the root their metadata; one after other entries that changes it is reported.
    Apply,
    /// Leaves them: the root is written already, with the last of them.
    Skip,
}

/// A layer's own root entry: the mode, owner, time and extended attributes of the image root.
struct LayerRoot {
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: i64,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl LayerRoot {
    fn entry(&self) -> OutEntry<'_> {
        OutEntry {
            path: b"rootfs",
            kind: b'5',
            mode: self.mode,
            uid: self.uid,
            gid: self.gid,
            mtime: self.mtime,
            size: 0,
            link: b"",
            dev: (0, 0),
            xattrs: &self.xattrs,
        }
    }
}

/// An entry's PAX records: whole, and its extended attributes (`SCHILY.xattr.NAME`).
type Records = Vec<(Vec<u8>, Vec<u8>)>;

async fn entry_records<R: AsyncRead + Unpin>(entry: &mut tokio_tar::Entry<R>) -> std::io::Result<(Records, Records)> {
    let (mut all, mut xattrs) = (Vec::new(), Vec::new());
    if let Some(extensions) = entry.pax_extensions().await? {
        for ext in extensions.flatten() {
            if let Some(name) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") {
                xattrs.push((name.to_vec(), ext.value_bytes().to_vec()));
            }
            all.push((ext.key_bytes().to_vec(), ext.value_bytes().to_vec()));
        }
    }
    Ok((all, xattrs))
}

fn refused_entry(path: &[u8], why: &str) -> OciError {
    OciError::Invalid(format!("layer entry {:?}: {why}", String::from_utf8_lossy(path)))
}

/// Writes the layer's entries into `aci` (none without one: `Repeats::Find` only reads), as
/// `repeats` says, and checks its digests. Returns the layer's last root entry when one came
/// after other entries and changed the root: the entries after it are then read (for the
/// digests) but not written, as the layer must be converted again.
async fn convert_layer(
    mut aci: Option<&mut AciBuilder>,
    blob: Reader,
    digest: Option<&str>,
    diff_id: &str,
    roots: RootEntries,
    mut repeats: Repeats<'_>,
) -> Result<Option<LayerRoot>, OciError> {
    let stored = |source| OciError::Layer { diff_id: diff_id.into(), source };
    let io = |e: std::io::Error| OciError::Io(e.to_string());
    let (raw, raw_hash) = HashReader::new(blob);
    let (_, decompressed) = rkt_store::aci::decompressed(raw).await?;
    let (plain, diff_hash) = HashReader::new(decompressed);
    // The tar reader asks for each header's 512 bytes on its own: through a buffer, the decoder
    // inflates big runs at a time rather than a few hundred bytes per call.
    let plain = tokio::io::BufReader::with_capacity(PLAIN_BUFFER, plain);
    let (plain, data_end) = UnpaddedEnd::new(plain);
    let mut archive = tokio_tar::Archive::new(plain);
    let mut late_root = None;
    {
        let mut entries = archive.entries().map_err(io)?;
        // Each entry's place in the layer, the same on every pass.
        let mut ordinal = 0u64;
        while let Some(entry) = poll_fn(|cx| Pin::new(&mut entries).poll_next(cx)).await {
            ordinal += 1;
            let mut entry = entry.map_err(|e| OciError::Invalid(format!("layer is not a readable tar: {e}")))?;
            let header = entry.header().clone();
            data_end.store(entry.raw_file_position() + entry.effective_size(), Ordering::Release);
            let etype = header.entry_type();
            if etype.is_pax_global_extensions() {
                continue;
            }
            let (records, xattrs) = entry_records(&mut entry).await.map_err(io)?;
            let raw_path = entry.path_bytes().map_err(io)?.into_owned();
            let legacy_directory = rkt_store::go_tar::go_reads_alike(&header, &raw_path, entry.effective_size())
                .map_err(|why| refused_entry(&raw_path, &why))?;
            let sparse = sparse_records(&records).map_err(|why| refused_entry(&raw_path, &why))?;
            let pax_mtime = records.iter().rev().find(|(key, _)| key == b"mtime").map(|(_, value)| value.as_slice());
            let mtime =
                rkt_store::go_tar::entry_mtime(&header, pax_mtime).map_err(|why| refused_entry(&raw_path, why))?;
            // A sparse file's records name it; its header, a place of GNU tar's making.
            let raw_path = match sparse.as_ref().and_then(|s| s.name.clone()) {
                Some(name) => name,
                None => raw_path,
            };
            let Some(path) = clean(&raw_path)? else {
                // The layer's own root (`./`, `/`): its mode, owner and time become the image
                // root's, as Docker and umoci apply them.
                let Some(aci) = aci.as_deref_mut() else { continue };
                if (etype.is_dir() || legacy_directory) && roots == RootEntries::Apply {
                    let root = LayerRoot {
                        mode: header.mode().map_err(io)?,
                        uid: header.uid().map_err(io)?,
                        gid: header.gid().map_err(io)?,
                        mtime,
                        xattrs,
                    };
                    let applied =
                        late_root.is_none() && (aci.root(&root.entry()).map_err(stored)? || aci.root_is(&root.entry()));
                    if !applied {
                        late_root = Some(root);
                    }
                }
                continue;
            };
            if late_root.is_some() {
                continue;
            }
            let kind = match etype.as_byte() {
                _ if legacy_directory => b'5',
                b'0' | 0 | b'7' => b'0',
                k @ (b'1' | b'2' | b'3' | b'4' | b'5' | b'6') => k,
                other => {
                    return Err(OciError::Invalid(format!(
                        "layer entry {:?} has an unsupported type {:?}",
                        String::from_utf8_lossy(&path),
                        other as char
                    )))
                }
            };
            if let Repeats::Find(last) = &mut repeats {
                last.record(&path, ordinal, kind == b'5');
                continue;
            }
            let mut link = entry.link_name_bytes().map_err(io)?.map(|l| l.into_owned()).unwrap_or_default();
            if kind == b'1' {
                let target =
                    clean(&link)?.ok_or_else(|| OciError::Invalid("a hard link to the layer's root".into()))?;
                link = [b"rootfs/".as_slice(), &target].concat();
            }
            let data_size = entry.effective_size();
            let mut sparse = match sparse {
                Some(_) if kind != b'0' => {
                    return Err(refused_entry(&path, "sparse-file records on what is not a file"))
                }
                Some(records) => {
                    Some(records.expand(&mut entry, data_size).await.map_err(|why| refused_entry(&path, &why))?)
                }
                None => None,
            };
            // Left out when a later entry replaces it, once its sparse map has been read and
            // checked above, as Go reads every entry's.
            if matches!(&repeats, Repeats::KeepLast(last) if !last.keeps(&path, ordinal)) {
                continue;
            }
            let Some(aci) = aci.as_deref_mut() else { continue };
            let size = match (&sparse, kind) {
                (Some(whole), _) => whole.size(),
                (None, b'0') => data_size,
                (None, _) => 0,
            };
            let full = [b"rootfs/".as_slice(), &path].concat();
            let out_entry = OutEntry {
                path: &full,
                kind,
                mode: header.mode().map_err(io)?,
                uid: header.uid().map_err(io)?,
                gid: header.gid().map_err(io)?,
                mtime,
                size,
                link: &link,
                dev: (
                    header.device_major().ok().flatten().unwrap_or(0),
                    header.device_minor().ok().flatten().unwrap_or(0),
                ),
                xattrs: &xattrs,
            };
            let written = match sparse.as_mut() {
                Some(whole) => aci.entry(&out_entry, whole).await,
                None => aci.entry(&out_entry, &mut entry).await,
            };
            written.map_err(|e| match e {
                EntryError::Read(e) => OciError::Invalid(format!("layer is not a readable tar: {e}")),
                EntryError::Store(source) => stored(source),
                EntryError::GivenAgain(source) => OciError::GivenAgain { diff_id: diff_id.into(), source },
            })?;
        }
    }
    // The layer's own end-of-archive marker leaves the compressed stream unread: read it all,
    // or the digests would cover only part of it.
    let mut plain = archive.into_inner().map_err(|_| OciError::Io("layer reader still in use".into()))?;
    // The tar reader stops at the first zero block, where Go reads one more.
    let mut next = [0u8; 512];
    let mut got = 0;
    while got < next.len() {
        match tokio::io::AsyncReadExt::read(&mut plain, &mut next[got..]).await {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) => return Err(OciError::Invalid(format!("layer stream: {e}"))),
        }
    }
    rkt_store::go_tar::after_first_zero_block(&next[..got])
        .map_err(|why| OciError::Invalid(format!("layer: {why}")))?;
    let trailing =
        tokio::io::copy(&mut tokio::io::AsyncReadExt::take(&mut plain, MAX_TRAILING + 1), &mut tokio::io::sink())
            .await
            .map_err(|e| OciError::Invalid(format!("layer stream: {e}")))?;
    if trailing > MAX_TRAILING {
        return Err(OciError::Invalid("more than 1 MiB of data after the end of the layer's tar".into()));
    }
    drop(plain);
    let diff = format!("sha256:{}", hex_of(&diff_hash));
    if diff != diff_id {
        return Err(OciError::Digest {
            what: "layer's uncompressed content".into(),
            expected: diff_id.to_string(),
            actual: diff,
        });
    }
    if let Some(expected) = digest {
        let actual = format!("sha256:{}", hex_of(&raw_hash));
        if actual != expected {
            return Err(OciError::Digest { what: "layer blob".into(), expected: expected.into(), actual });
        }
    }
    Ok(late_root)
}
