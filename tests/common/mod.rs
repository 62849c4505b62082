//! What the command-line tests share: a tar writer that can write any entry (hostile ones
//! too), compressors, a scratch store, and a snapshot of a store to compare before and after.
#![allow(dead_code)]

pub mod oci;
pub mod registry;
pub mod web;

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest, Sha512};

pub const REG: u8 = b'0';
pub const HARDLINK: u8 = b'1';
pub const SYMLINK: u8 = b'2';
pub const CHAR: u8 = b'3';
pub const DIR: u8 = b'5';
pub const FIFO: u8 = b'6';

/// Writes ustar archives byte by byte, with no opinion on what is a sane entry.
#[derive(Default)]
pub struct Tar {
    buf: Vec<u8>,
}

pub struct Header<'a> {
    pub name: &'a [u8],
    pub kind: u8,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub link: &'a [u8],
    pub data: &'a [u8],
    pub mtime: u64,
    pub dev: (u32, u32),
}

impl Default for Header<'_> {
    fn default() -> Self {
        Header {
            name: b"",
            kind: REG,
            mode: 0o644,
            uid: 0,
            gid: 0,
            link: b"",
            data: b"",
            mtime: 1_500_000_000,
            dev: (0, 0),
        }
    }
}

fn octal(field: &mut [u8], value: u64) {
    let s = format!("{value:0width$o}", width = field.len() - 1);
    field[..s.len()].copy_from_slice(s.as_bytes());
    field[s.len()] = 0;
}

impl Tar {
    pub fn new() -> Self {
        Tar::default()
    }

    pub fn raw(&mut self, h: Header) -> &mut Self {
        // Names and link targets too long for their fields go in a PAX header, as GNU tar writes.
        let mut records = Vec::new();
        if h.name.len() > 100 {
            records.extend(pax_record("path", h.name));
        }
        if h.link.len() > 100 {
            records.extend(pax_record("linkpath", h.link));
        }
        if !records.is_empty() {
            self.raw(Header { name: b"././@PaxHeader", kind: b'x', data: &records, ..Default::default() });
        }
        let mut block = [0u8; 512];
        let name_len = h.name.len().min(100);
        block[..name_len].copy_from_slice(&h.name[..name_len]);
        octal(&mut block[100..108], u64::from(h.mode));
        octal(&mut block[108..116], u64::from(h.uid));
        octal(&mut block[116..124], u64::from(h.gid));
        octal(&mut block[124..136], h.data.len() as u64);
        octal(&mut block[136..148], h.mtime);
        block[156] = h.kind;
        let link_len = h.link.len().min(100);
        block[157..157 + link_len].copy_from_slice(&h.link[..link_len]);
        block[257..263].copy_from_slice(b"ustar\0");
        block[263..265].copy_from_slice(b"00");
        octal(&mut block[329..337], u64::from(h.dev.0));
        octal(&mut block[337..345], u64::from(h.dev.1));
        block[148..156].copy_from_slice(b"        ");
        let sum: u32 = block.iter().map(|b| u32::from(*b)).sum();
        let s = format!("{sum:06o}\0 ");
        block[148..156].copy_from_slice(s.as_bytes());
        self.buf.extend_from_slice(&block);
        self.buf.extend_from_slice(h.data);
        let pad = (512 - h.data.len() % 512) % 512;
        self.buf.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    /// A PAX extended header for the entry that follows.
    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let data: Vec<u8> = records.iter().flat_map(|(k, v)| pax_record(k, v)).collect();
        self.raw(Header { name: b"././@PaxHeader", kind: b'x', data: &data, ..Default::default() })
    }

    pub fn dir(&mut self, name: &str) -> &mut Self {
        self.raw(Header { name: name.as_bytes(), kind: DIR, mode: 0o755, ..Default::default() })
    }

    pub fn dir_mode(&mut self, name: &str, mode: u32, uid: u32, gid: u32) -> &mut Self {
        self.raw(Header { name: name.as_bytes(), kind: DIR, mode, uid, gid, ..Default::default() })
    }

    pub fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.raw(Header { name: name.as_bytes(), data, ..Default::default() })
    }

    pub fn file_mode(&mut self, name: &str, data: &[u8], mode: u32, uid: u32, gid: u32) -> &mut Self {
        self.raw(Header { name: name.as_bytes(), data, mode, uid, gid, ..Default::default() })
    }

    pub fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.raw(Header {
            name: name.as_bytes(),
            kind: SYMLINK,
            mode: 0o777,
            link: target.as_bytes(),
            ..Default::default()
        })
    }

    pub fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.raw(Header { name: name.as_bytes(), kind: HARDLINK, link: target.as_bytes(), ..Default::default() })
    }

    pub fn manifest(&mut self, json: &str) -> &mut Self {
        self.file("manifest", json.as_bytes())
    }

    /// The archive with its end-of-archive marker.
    pub fn finish(&self) -> Vec<u8> {
        let mut out = self.buf.clone();
        out.extend(std::iter::repeat_n(0u8, 1024));
        out
    }

    /// The archive without its end-of-archive marker.
    pub fn unterminated(&self) -> Vec<u8> {
        self.buf.clone()
    }
}

fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body_len = key.len() + value.len() + 3;
    let mut len = body_len + 1;
    while len != body_len + len.to_string().len() {
        len = body_len + len.to_string().len();
    }
    let mut out = format!("{len} {key}=").into_bytes();
    out.extend_from_slice(value);
    out.push(b'\n');
    out
}

pub fn manifest_json(name: &str, extra: &str) -> String {
    let extra = if extra.is_empty() { String::new() } else { format!(",{extra}") };
    format!(r#"{{"acKind":"ImageManifest","acVersion":"0.8.11","name":"{name}"{extra}}}"#)
}

/// A small valid ACI named `name` with one file whose content is `content`.
pub fn simple_aci(name: &str, content: &str) -> Vec<u8> {
    let mut t = Tar::new();
    t.manifest(&manifest_json(name, r#""labels":[{"name":"version","value":"1.0.0"}]"#))
        .dir("rootfs")
        .dir("rootfs/etc")
        .file("rootfs/etc/content", content.as_bytes());
    t.finish()
}

/// An ACI named `name` that depends on the image named `dependency`, with one file of its own.
pub fn aci_on(name: &str, dependency: &str, file: &str, content: &[u8]) -> Vec<u8> {
    let mut t = Tar::new();
    t.manifest(&manifest_json(name, &format!(r#""dependencies":[{{"imageName":"{dependency}"}}]"#)))
        .dir("rootfs")
        .file(&format!("rootfs/{file}"), content);
    t.finish()
}

/// Waits for rkt processes, each of which must succeed.
pub fn all_succeed(children: Vec<std::process::Child>) {
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

/// Bytes no compressor can shrink (xorshift), so that compressed files stay as large as this.
pub fn incompressible(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn bzip2(data: &[u8]) -> Vec<u8> {
    let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn xz(data: &[u8]) -> Vec<u8> {
    let mut e = liblzma::write::XzEncoder::new(Vec::new(), 6);
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).unwrap()
}

/// The ID rkt gives an uncompressed image tar.
pub fn image_id(tar: &[u8]) -> String {
    let digest = Sha512::digest(tar);
    let hex: String = digest[..32].iter().map(|b| format!("{b:02x}")).collect();
    format!("sha512-{hex}")
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A scratch directory with a store in it.
pub struct Env {
    pub tmp: tempfile::TempDir,
}

/// The first words of rkt's progress lines when stderr is not a terminal.
const PROGRESS_VERBS: [&str; 6] =
    ["Downloading", "Downloaded", "Decompressing", "Decompressed", "Importing", "Imported"];

impl Env {
    pub fn new() -> Self {
        Env { tmp: tempfile::tempdir().unwrap() }
    }

    pub fn store(&self) -> PathBuf {
        self.tmp.path().join("store")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    pub fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        // A long random-test run can be pointed at a copy of the binary, so that rebuilding
        // meanwhile does not change what it tests halfway through.
        let rkt = std::env::var_os("RKT_TEST_BINARY").unwrap_or_else(|| env!("CARGO_BIN_EXE_rkt").into());
        let mut c = Command::new(rkt);
        c.arg("--dir").arg(self.store()).args(args);
        // No registry credentials from whoever runs the tests.
        c.env("DOCKER_CONFIG", self.path("no-docker-config"))
            .env("XDG_RUNTIME_DIR", self.path("no-runtime-dir"))
            .env("XDG_CONFIG_HOME", self.path("no-config-home"))
            .env_remove("REGISTRY_AUTH_FILE");
        c
    }

    /// rkt started with a soft limit of `soft` open files (the hard limit unchanged), as a
    /// login shell often starts it (1024).
    pub fn cmd_with_open_files(&self, args: &[&str], soft: u64) -> Command {
        let mut c = self.cmd(args);
        // SAFETY: the closure only makes system calls.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut c, move || {
                let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
                libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
                limit.rlim_cur = soft.min(limit.rlim_max);
                match libc::setrlimit(libc::RLIMIT_NOFILE, &limit) {
                    0 => Ok(()),
                    _ => Err(std::io::Error::last_os_error()),
                }
            });
        }
        c
    }

    pub fn rkt(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Runs rkt and insists that it succeeds; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.rkt(args);
        assert!(out.status.success(), "rkt {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs rkt and insists that it fails as rkt fails: exit 254 and one line on stderr
    /// besides the progress lines of transfers (`Downloading …`, `Imported …`, …).
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.rkt(args);
        assert_eq!(out.status.code(), Some(254), "rkt {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        let err = String::from_utf8(out.stderr).unwrap();
        let message: Vec<&str> =
            err.lines().filter(|l| !PROGRESS_VERBS.iter().any(|v| l.starts_with(&format!("{v} ")))).collect();
        assert_eq!(message.len(), 1, "one line expected: {err}");
        message[0].to_string() + "\n"
    }

    /// The full IDs of the stored images, Docker layers among them.
    pub fn image_ids(&self) -> std::collections::BTreeSet<String> {
        let json: serde_json::Value =
            serde_json::from_str(&self.ok(&["image", "list", "--all", "--format=json"])).unwrap();
        json.as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap().to_string()).collect()
    }

    /// `image list`'s rows, with `extra` flags: each image's full ID, name and size in bytes.
    pub fn listed(&self, extra: &[&str]) -> Vec<(String, String, u64)> {
        let listed = self.ok(&[&["image", "list", "--no-legend", "--full", "--fields=id,name,size"], extra].concat());
        let rows = listed.lines().map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>());
        rows.map(|row| (row[0].clone(), row[1].clone(), row[2].parse().unwrap())).collect()
    }

    /// Makes the images `ids` (all, when empty) last used and imported `days` ago.
    pub fn age_images(&self, ids: &[&str], days: u64) {
        let then = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .saturating_sub(std::time::Duration::from_secs(days * 86400))
            .as_nanos() as i64;
        let db = rusqlite::Connection::open(self.store().join("cas/db/index.sqlite")).unwrap();
        let set = "UPDATE images SET last_used = ?1, import_time = ?1";
        if ids.is_empty() {
            db.execute(set, [then]).unwrap();
        }
        for id in ids {
            db.execute(&format!("{set} WHERE id = ?2"), (then, id)).unwrap();
        }
    }

    pub fn fetch(&self, bytes: &[u8], name: &str) -> String {
        let path = self.write(name, bytes);
        self.ok(&["fetch", "--insecure-options=image", "--full", path.to_str().unwrap()]).trim().to_string()
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot::of(&self.store())
    }
}

/// Everything observable in a store: its files (but the index's own), their sizes and
/// contents, and every index row.
#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot {
    files: BTreeMap<String, (u32, u64, String)>,
    rows: Vec<String>,
}

impl Snapshot {
    pub fn of(store: &Path) -> Snapshot {
        let mut files = BTreeMap::new();
        walk(store, store, &mut files);
        let db = store.join("cas/db/index.sqlite");
        let mut rows = Vec::new();
        if db.exists() {
            let conn = rusqlite::Connection::open(&db).unwrap();
            for table in ["images", "remotes", "trees", "tree_images"] {
                let mut stmt = conn.prepare(&format!("SELECT * FROM {table} ORDER BY 1")).unwrap();
                let n = stmt.column_count();
                let mut q = stmt.query([]).unwrap();
                while let Some(row) = q.next().unwrap() {
                    let cells: Vec<String> = (0..n).map(|i| format!("{:?}", row.get_ref(i).unwrap())).collect();
                    rows.push(format!("{table}: {}", cells.join(" | ")));
                }
            }
        }
        Snapshot { files, rows }
    }
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, (u32, u64, String)>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        // The index's own files, and downloads kept to be resumed, are not part of what the
        // store shows.
        if rel.starts_with("cas/db") || rel == "cas/lock" || rel.starts_with("cas/downloads") {
            continue;
        }
        let m = p.symlink_metadata().unwrap();
        let content = if m.is_file() {
            let d = Sha512::digest(std::fs::read(&p).unwrap());
            d[..8].iter().map(|b| format!("{b:02x}")).collect()
        } else if m.file_type().is_symlink() {
            std::fs::read_link(&p).unwrap().to_string_lossy().into_owned()
        } else {
            String::new()
        };
        out.insert(rel, (m.mode(), if m.is_file() { m.len() } else { 0 }, content));
        if m.is_dir() {
            walk(root, &p, out);
        }
    }
}

/// A small deterministic generator (an LCG): each seed gives the same sequence on every run.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}
