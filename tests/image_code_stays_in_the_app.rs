//! hostile-inputs.md row 3 (CVE-2019-14271: a privileged helper loads NSS modules from the
//! container's root): `rkt run`, traced with strace. The image is baited: its own
//! `nsswitch.conf` names an NSS module it ships, it has an `ld.so.preload`, and the app's user
//! and group are names only its `/etc/passwd` and `/etc/group` know. Once a process of rkt's
//! has entered the pod's root (pivot_root or chroot), it must open no shared object, NSS or
//! loader file and execute nothing but the app; the app's own process may, after its exec.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use common::*;

fn baited_image() -> Vec<u8> {
    let manifest = r#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/nss-bait",
        "labels":[{"name":"os","value":"linux"},{"name":"arch","value":"amd64"}],
        "app":{"exec":["/bin/sh","-c","id"],"user":"bob","group":"bob","supplementaryGIDs":[50]}}"#;
    let mut t = Tar::new();
    t.manifest(manifest).dir("rootfs").dir("rootfs/bin").dir("rootfs/etc").dir("rootfs/lib");
    t.file_mode("rootfs/bin/busybox", &std::fs::read("/bin/busybox").unwrap(), 0o755, 0, 0);
    t.symlink("rootfs/bin/sh", "busybox").symlink("rootfs/bin/id", "busybox");
    t.file("rootfs/etc/passwd", b"root:x:0:0::/:/bin/sh\nbob:x:1001:1001::/:/bin/sh\n")
        .file("rootfs/etc/group", b"root:x:0:\nbob:x:1001:\nstaff:x:50:bob\n")
        .file("rootfs/etc/nsswitch.conf", b"passwd: evil\ngroup: evil\nhosts: evil\n")
        .file("rootfs/etc/ld.so.preload", b"/lib/libevil.so\n")
        .file("rootfs/lib/libnss_evil.so.2", b"not an ELF file")
        .file("rootfs/lib/libevil.so", b"not an ELF file");
    t.finish()
}

/// Where a process stands, as the trace goes.
#[derive(Clone, Copy, Default)]
struct Process {
    /// It (or the process it was forked from) entered the pod's root.
    inside: bool,
    /// It has executed a program since: it is the app.
    app: bool,
}

/// What processes of rkt's did inside the pod before becoming the app, one line each, and how
/// many processes entered the pod's root.
fn inside_before_exec(log: &str, app_exec: &str) -> (Vec<String>, usize) {
    let mut processes: HashMap<u32, Process> = HashMap::new();
    let mut unfinished: HashMap<u32, String> = HashMap::new();
    let mut found = Vec::new();
    let mut entered = 0;
    for raw in log.lines() {
        let Some((pid, rest)) = raw.split_once(' ') else { continue };
        let Ok(pid) = pid.parse::<u32>() else { continue };
        let rest = rest.trim_start();
        // A call strace split in two: its start, then `<... name resumed>` and its result.
        let line = if let Some(start) = rest.strip_suffix(" <unfinished ...>") {
            unfinished.insert(pid, start.to_string());
            continue;
        } else if let Some(end) = rest.strip_prefix("<... ") {
            let end = end.split_once("resumed>").map_or(end, |(_, e)| e);
            format!("{}{end}", unfinished.remove(&pid).unwrap_or_default())
        } else {
            rest.to_string()
        };
        let Some((call, result)) = line.rsplit_once(" = ") else { continue };
        let ok = !result.trim_start().starts_with('-');
        let name = call.split('(').next().unwrap_or("");
        let me = *processes.entry(pid).or_default();
        match name {
            "clone" | "clone3" | "fork" | "vfork" if ok => {
                if let Ok(child) = result.split_whitespace().next().unwrap_or("").parse::<u32>() {
                    processes.insert(child, me);
                }
            }
            "pivot_root" | "chroot" if ok => {
                processes.entry(pid).or_default().inside = true;
                entered += 1;
            }
            "execve" | "execveat" if me.inside && !me.app => {
                if !call.contains(&format!("\"{app_exec}\"")) {
                    found.push(format!("{pid}: {line}"));
                }
                if ok {
                    processes.entry(pid).or_default().app = true;
                }
            }
            "open" | "openat" | "openat2" if me.inside && !me.app => {
                let path = call.split('"').nth(1).unwrap_or("");
                if [".so", "nsswitch", "gconv", "locale"].iter().any(|bait| path.contains(bait)) {
                    found.push(format!("{pid}: {line}"));
                }
            }
            _ => {}
        }
    }
    (found, entered)
}

#[test]
fn rkt_run_loads_no_code_from_the_image_outside_the_app() {
    if !is_root() || !Path::new("/bin/busybox").exists() {
        eprintln!("skipping: needs root and /bin/busybox (apt-get install busybox-static)");
        return;
    }
    if Command::new("strace").arg("-V").output().is_err() {
        eprintln!("skipping: needs strace (apt-get install strace)");
        return;
    }
    let env = Env::new();
    let id = env.fetch(&baited_image(), "bait.aci");
    let log = env.path("trace");
    let rkt = env.cmd(&["run", "--net=host", &id]);
    let out = Command::new("strace")
        .args([
            "-f",
            "-qq",
            "-e",
            "trace=open,openat,openat2,execve,execveat,pivot_root,chroot,clone,clone3,fork,vfork",
        ])
        .arg("-o")
        .arg(&log)
        .arg(rkt.get_program())
        .args(rkt.get_args())
        .envs(rkt.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("uid=1001(bob) gid=1001(bob) groups=50(staff)"), "{stdout}");
    let log = std::fs::read_to_string(&log).unwrap();
    let (found, entered) = inside_before_exec(&log, "/bin/sh");
    assert!(entered >= 2, "the trace shows no process entering the pod's root:\n{log}");
    assert!(found.is_empty(), "inside the pod, before the app:\n{}", found.join("\n"));
}

#[test]
fn the_trace_reader_sees_what_it_looks_for() {
    let log =
        "10 clone3({flags=CLONE_VM|CLONE_VFORK, exit_signal=SIGCHLD, stack=0x1, stack_size=0x2}, 88 <unfinished ...>\n\
               10 <... clone3 resumed>) = 11\n\
               11 pivot_root(\".\", \".\") = 0\n\
               11 openat(AT_FDCWD, \"/etc/nsswitch.conf\", O_RDONLY|O_CLOEXEC) = 3\n\
               11 clone(child_stack=NULL, flags=CLONE_CHILD_SETTID|SIGCHLD) = 12\n\
               12 openat(AT_FDCWD, \"/lib/libnss_evil.so.2\", O_RDONLY|O_CLOEXEC) = -1 ENOENT (No such file)\n\
               12 execve(\"/bin/sh\", [\"/bin/sh\", \"-c\", \"id\"], 0x1 /* 6 vars */) = 0\n\
               12 openat(AT_FDCWD, \"/lib/libc.so.6\", O_RDONLY|O_CLOEXEC) = 3\n\
               11 execve(\"/sbin/helper\", [\"helper\"], 0x1 /* 6 vars */) = 0\n\
               10 openat(AT_FDCWD, \"/lib/libc.so.6\", O_RDONLY|O_CLOEXEC) = 3\n";
    let (found, entered) = inside_before_exec(log, "/bin/sh");
    assert_eq!(entered, 1);
    assert_eq!(found.len(), 3, "{found:#?}");
    assert!(found[0].starts_with("11: openat") && found[1].starts_with("12: openat"), "{found:#?}");
    assert!(found[2].starts_with("11: execve(\"/sbin/helper\""), "{found:#?}");
}
