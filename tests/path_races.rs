//! hostile-inputs.md row 2 (symlink-exchange TOCTOU, CVE-2018-15664): while `rkt image render`
//! and `rkt image extract` write a tree, another thread keeps exchanging one of its directories
//! with a symlink to a sentinel directory outside it. Whatever the writer meets, it must never
//! write, change or even touch anything through that symlink: it opens each path one directory
//! at a time without following symlinks. It may finish or fail (exit 254, one line).

mod common;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;

/// How many directories the image holds below the raced one, each visited apart from the one
/// before, so that the writer walks through the raced name again and again.
const SUBDIRS: usize = 3000;

fn image() -> Vec<u8> {
    let mut t = Tar::new();
    t.manifest(&manifest_json("example.com/race", ""))
        .dir("rootfs")
        .dir_mode("rootfs/d", 0o700, 1000, 1000)
        .dir("rootfs/e");
    t.file_mode("rootfs/d/passwd", b"written through", 0o600, 1000, 1000);
    for i in 0..SUBDIRS {
        t.dir_mode(&format!("rootfs/d/a{i}"), 0o750, 1000, 1000)
            .file_mode(&format!("rootfs/d/a{i}/f"), b"data", 0o600, 1000, 1000)
            .file(&format!("rootfs/e/x{i}"), b"elsewhere");
    }
    t.finish()
}

/// Mode, owner, size, time and content of everything at and below `dir`.
fn state(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = p.symlink_metadata().unwrap();
        let content = if m.is_file() { std::fs::read_to_string(&p).unwrap() } else { String::new() };
        out.push(format!("{} {:o} {}:{} {} {} {content}", p.display(), m.mode(), m.uid(), m.gid(), m.len(), m.mtime()));
        if m.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
    }
    out.sort();
    out
}

fn c_path(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// Runs `args` (which write a tree whose raced directory will be `raced`) while a thread
/// exchanges `raced` with a symlink to `sentinel`; returns how many exchanges were made.
fn race(env: &Env, args: &[&str], raced: &Path, sentinel: &Path) -> usize {
    let decoy = raced.with_file_name("decoy");
    let stop = Arc::new(AtomicBool::new(false));
    let flips = Arc::new(AtomicUsize::new(0));
    let flipper = {
        let (stop, flips, raced, sentinel) = (stop.clone(), flips.clone(), raced.to_path_buf(), sentinel.to_path_buf());
        std::thread::spawn(move || {
            let (a, b) = (c_path(&raced), c_path(&decoy));
            while !stop.load(Ordering::Relaxed) {
                if raced.symlink_metadata().is_err() {
                    std::thread::yield_now();
                    continue;
                }
                if decoy.symlink_metadata().is_err() {
                    let _ = std::os::unix::fs::symlink(&sentinel, &decoy);
                }
                // SAFETY: two valid NUL-terminated paths.
                let r = unsafe {
                    libc::renameat2(libc::AT_FDCWD, a.as_ptr(), libc::AT_FDCWD, b.as_ptr(), libc::RENAME_EXCHANGE)
                };
                if r == 0 {
                    flips.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let out = env.rkt(args);
    stop.store(true, Ordering::Relaxed);
    flipper.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => {}
        Some(254) => assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: not one line: {stderr}"),
        other => panic!("{args:?}: exit {other:?}: {stderr}"),
    }
    flips.load(Ordering::Relaxed)
}

#[test]
fn a_directory_exchanged_with_a_symlink_while_a_tree_is_written_is_never_followed() {
    let env = Env::new();
    let id = env.fetch(&image(), "race.aci");
    let sentinel = env.path("sentinel");
    std::fs::create_dir(&sentinel).unwrap();
    std::fs::write(sentinel.join("passwd"), "untouched").unwrap();
    let before = state(&sentinel);
    let render = env.path("render");
    let extract = env.path("extract");
    let runs: [(Vec<&str>, std::path::PathBuf); 2] = [
        (vec!["image", "render", "--rootfs-only", &id, render.to_str().unwrap()], render.join("d")),
        (vec!["image", "extract", &id, extract.to_str().unwrap()], extract.join("rootfs/d")),
    ];
    for (args, raced) in &runs {
        let flips = race(&env, args, raced, &sentinel);
        assert!(flips > 0, "{args:?}: the directory was never exchanged; the race did not run");
        assert_eq!(state(&sentinel), before, "{args:?}: the sentinel changed after {flips} exchanges");
    }
}
