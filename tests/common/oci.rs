//! OCI image layouts written by the tests, byte by byte.

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// One layer: its uncompressed tar, its media type and the compressor that matches it.
pub type LayerSpec = (Vec<u8>, &'static str, fn(&[u8]) -> Vec<u8>);

/// Writes an OCI image layout, one image at a time.
pub struct Layout {
    pub dir: PathBuf,
    pub index: Vec<serde_json::Value>,
    /// Makes the next image's config list a wrong diff_id for its first layer.
    pub lie_about_diff_ids: bool,
}

impl Layout {
    pub fn new(dir: PathBuf) -> Self {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        Layout { dir, index: Vec::new(), lie_about_diff_ids: false }
    }

    pub fn blob(&self, bytes: &[u8]) -> (String, usize) {
        let digest = sha256(bytes);
        std::fs::write(self.dir.join("blobs/sha256").join(&digest[7..]), bytes).unwrap();
        (digest, bytes.len())
    }

    /// Adds an image of `layers` (uncompressed tars, each with its media type and compressor).
    pub fn image(&mut self, reference: &str, layers: &[LayerSpec], config: serde_json::Value) -> String {
        let mut descs = Vec::new();
        let mut diff_ids: Vec<String> = Vec::new();
        for (tar, media, compress) in layers {
            diff_ids.push(sha256(tar));
            let (digest, size) = self.blob(&compress(tar));
            descs.push(serde_json::json!({"mediaType": media, "digest": digest, "size": size}));
        }
        if self.lie_about_diff_ids {
            diff_ids[0] = sha256(b"some other layer");
        }
        let config = serde_json::json!({
            "architecture": "amd64", "os": "linux", "config": config,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        });
        let (config_digest, config_size) = self.blob(config.to_string().as_bytes());
        let manifest = serde_json::json!({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
            "layers": descs,
        });
        self.add(reference, "application/vnd.oci.image.manifest.v1+json", &manifest)
    }

    /// Adds `document` (a manifest or an index of `media_type`) as `reference`.
    pub fn add(&mut self, reference: &str, media_type: &str, document: &serde_json::Value) -> String {
        self.add_bytes(reference, media_type, document.to_string().as_bytes())
    }

    /// Adds a document written byte for byte (keys in the order and case given).
    pub fn add_bytes(&mut self, reference: &str, media_type: &str, document: &[u8]) -> String {
        let (digest, size) = self.blob(document);
        self.index.push(serde_json::json!({
            "mediaType": media_type, "digest": digest, "size": size,
            "annotations": {"org.opencontainers.image.ref.name": reference},
        }));
        std::fs::write(
            self.dir.join("index.json"),
            serde_json::json!({"schemaVersion": 2, "manifests": self.index}).to_string(),
        )
        .unwrap();
        digest
    }

    /// Adds an index of the manifests stored under `platforms` (digest, architecture) as
    /// `reference`.
    pub fn platform_index(&mut self, reference: &str, platforms: &[(&str, &str)]) -> String {
        let manifests: Vec<_> = platforms
            .iter()
            .map(|(digest, arch)| {
                let size = std::fs::metadata(self.dir.join("blobs/sha256").join(&digest[7..])).unwrap().len();
                serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest,
                    "size": size, "platform": {"architecture": arch, "os": "linux"}})
            })
            .collect();
        let index = serde_json::json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": manifests});
        self.add(reference, INDEX, &index)
    }
}

pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";

pub fn plain(b: &[u8]) -> Vec<u8> {
    b.to_vec()
}

pub const TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const TGZ: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const TZST: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// Fetches the layout's `v1` image into `env`'s store and renders its root filesystem: the
/// image's full ID and the tree's path.
pub fn fetch_and_render(env: &super::Env, layout: &Path) -> (String, PathBuf) {
    let image = format!("oci:{}:v1", layout.display());
    let id = env.ok(&["fetch", "--insecure-options=image", "--full", &image]).trim().to_string();
    let ours = env.path("ours");
    env.ok(&["image", "render", "--rootfs-only", &id, ours.to_str().unwrap()]);
    (id, ours)
}

/// Exports `id` as one ACI, fetches it into a store of its own and renders it: that store, the
/// copy's ID and its tree's path.
pub fn exported_and_rendered(env: &super::Env, id: &str) -> (super::Env, String, PathBuf) {
    let exported = env.path("squashed.aci");
    env.ok(&["image", "export", id, exported.to_str().unwrap()]);
    let other = super::Env::new();
    let copy = other.fetch(&std::fs::read(&exported).unwrap(), "copy.aci");
    let again = other.path("again");
    other.ok(&["image", "render", "--rootfs-only", &copy, again.to_str().unwrap()]);
    (other, copy, again)
}

/// What `umoci unpack` makes of the layout's `v1` image: the path of its root filesystem.
pub fn umoci_unpack(env: &super::Env, layout: &Path) -> PathBuf {
    let bundle = env.path("bundle");
    let out = std::process::Command::new("umoci")
        .args(["unpack", "--image", &format!("{}:v1", layout.display()), bundle.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "umoci: {}", String::from_utf8_lossy(&out.stderr));
    bundle.join("rootfs")
}

/// Type, mode, owner, size, content and link target of every entry below `root`, and which
/// paths share an inode.
pub fn describe(root: &Path) -> (BTreeMap<String, String>, Vec<Vec<String>>) {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let m = p.symlink_metadata().unwrap();
            let kind = m.file_type();
            let what = if kind.is_symlink() {
                format!("link {}", std::fs::read_link(&p).unwrap().display())
            } else if kind.is_fifo() {
                "fifo".to_string()
            } else if kind.is_char_device() || kind.is_block_device() {
                format!("device {:x}", m.rdev())
            } else if m.is_dir() {
                stack.push(p.clone());
                "dir".to_string()
            } else {
                inodes.entry(m.ino()).or_default().push(rel.clone());
                format!("file {}", sha256(&std::fs::read(&p).unwrap()))
            };
            let mode = if m.file_type().is_symlink() { 0 } else { m.mode() & 0o7777 };
            // Directories' times depend on the order a tool makes what they hold.
            let time = if m.is_dir() { String::new() } else { format!(" t{}", m.mtime()) };
            out.insert(rel, format!("{what} {mode:o} {}:{}{time}{}", m.uid(), m.gid(), user_xattrs(&p)));
        }
    }
    let links = inodes.into_values().filter(|v| v.len() > 1).map(|mut v| {
        v.sort();
        v
    });
    // Sorted by name: inode numbers differ from one tree to another.
    let mut links: Vec<_> = links.collect();
    links.sort();
    (out, links)
}

/// Mode, owner and time of a directory: what a layer's root entry gives the image root.
pub fn root_meta(dir: &Path) -> (u32, u32, u32, i64) {
    let m = std::fs::metadata(dir).unwrap();
    (m.mode() & 0o7777, m.uid(), m.gid(), m.mtime())
}

pub fn tools() -> bool {
    let ok = super::is_root()
        && ["skopeo", "umoci"].iter().all(|t| std::process::Command::new(t).arg("--version").output().is_ok());
    if !ok {
        eprintln!("skipping: needs root, skopeo and umoci (apt-get install skopeo umoci)");
    }
    ok
}

/// The `user.` extended attributes of `path` (not followed), as ` name=value` each, sorted.
fn user_xattrs(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let mut names = vec![0u8; 4096];
    // SAFETY: valid pointers and lengths for the call.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n <= 0 {
        return String::new();
    }
    let mut out: Vec<String> = Vec::new();
    for name in names[..n as usize].split(|b| *b == 0).filter(|n| n.starts_with(b"user.")) {
        let cname = std::ffi::CString::new(name).unwrap();
        let mut value = vec![0u8; 4096];
        // SAFETY: as above.
        let len = unsafe { libc::lgetxattr(c.as_ptr(), cname.as_ptr(), value.as_mut_ptr().cast(), value.len()) };
        let value = if len >= 0 { String::from_utf8_lossy(&value[..len as usize]).into_owned() } else { "?".into() };
        out.push(format!(" {}={value}", String::from_utf8_lossy(name)));
    }
    out.sort();
    out.concat()
}

/// Whether `umoci unpack` refuses the image `v1` of `layout`.
pub fn umoci_refuses(env: &super::Env, layout: &Path) -> bool {
    let out = std::process::Command::new("umoci")
        .args(["unpack", "--image", &format!("{}:v1", layout.display())])
        .arg(env.path("umoci-bundle"))
        .output()
        .unwrap();
    !out.status.success()
}
