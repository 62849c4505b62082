//! `rkt run` and the pod commands, for real: namespaces, overlay roots, cgroups. They need root
//! and Debian's busybox-static, and skip with a reason without them.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;

/// A store with the busybox ACI fetched, or `None` (with the reason printed).
fn busybox() -> Option<(Env, String)> {
    if !is_root() {
        eprintln!("skipping: rkt run needs root");
        return None;
    }
    if !std::path::Path::new("/bin/busybox").exists() {
        eprintln!("skipping: /bin/busybox is missing (apt-get install busybox-static)");
        return None;
    }
    let env = Env::new();
    let aci = env.path("busybox.aci");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/make-busybox-aci.sh");
    let out = std::process::Command::new("bash").arg(script).arg(&aci).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let id = env.ok(&["fetch", "--insecure-options=image", "--full", aci.to_str().unwrap()]).trim().to_string();
    Some((env, id))
}

/// Starts `rkt run` of `sh -c script` in the background and waits until its pod runs; returns
/// the rkt process (its stdout piped) and the pod's UUID.
fn start_pod(env: &Env, id: &str, script: &str) -> (std::process::Child, String) {
    let uuid_file = env.path("uuid");
    let save = format!("--uuid-file-save={}", uuid_file.display());
    let child = env
        .cmd(&["run", "--net=host", &save, id, "--exec=/bin/sh", "--", "-c", script])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    (child, running_pod(env, &uuid_file))
}

/// Waits until the pod whose UUID `rkt run` saves in `uuid_file` runs its app (a command can
/// enter it); returns its UUID.
fn running_pod(env: &Env, uuid_file: &std::path::Path) -> String {
    for waited in 0.. {
        if let Ok(uuid) = std::fs::read_to_string(uuid_file) {
            if env.rkt(&["enter", &uuid, "/bin/true"]).status.success() {
                return uuid;
            }
        }
        assert!(waited < 200, "the pod's app did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    unreachable!()
}

/// Runs `sh -c script` in a pod; returns (exit code, stdout, stderr).
fn sh(env: &Env, id: &str, flags: &[&str], script: &str) -> (i32, String, String) {
    let mut args = vec!["run", "--net=host"];
    args.extend_from_slice(flags);
    args.extend([id, "--exec=/bin/sh", "--", "-c", script]);
    let out = env.rkt(&args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn runs_the_image_app_and_returns_its_exit_code() {
    let Some((env, id)) = busybox() else { return };
    let out = env.ok(&["run", "--net=host", &id]);
    assert!(out.starts_with("Hello from busybox"), "{out}");
    let (code, stdout, _) = sh(&env, &id, &[], "echo out; exit 42");
    assert_eq!((code, stdout.as_str()), (42, "out\n"));
    let (code, _, stderr) = sh(&env, &id, &[], "kill -9 $$");
    assert_eq!(code, 137, "{stderr}");
    let out = env.rkt(&["run", "--net=host", &id, "--exec=/no/such/program"]);
    assert_eq!(out.status.code(), Some(254));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/no/such/program"));
    // A name is looked up in the app's PATH (appc, as exec(3)).
    assert_eq!(env.ok(&["run", "--net=host", &id, "--exec=echo", "--", "by name"]), "by name\n");
    let out = env.rkt(&["run", "--net=host", &id, "--exec=nosuch"]);
    assert_eq!(out.status.code(), Some(254));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("\"nosuch\" is not in the app's PATH (/bin:/sbin:"), "{stderr}");
}

#[test]
fn the_pod_has_its_own_pid_uts_and_network_namespaces() {
    let Some((env, id)) = busybox() else { return };
    let (code, out, err) = sh(&env, &id, &["--hostname=podhost"], "echo $$; hostname; cat /proc/1/status | grep ^Name");
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "2", "the app is the first child of the pod's init");
    assert_eq!(lines[1], "podhost");
    let out = env.rkt(&["run", "--net=none", &id, "--exec=/bin/sh", "--", "-c", "ls /sys/class/net; hostname"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("lo"), "only lo with --net=none: {text}");
    assert!(lines.next().unwrap().starts_with("rkt-"), "default hostname rkt-UUID: {text}");
}

#[test]
fn proc_sys_is_read_only_and_dev_has_the_ace_devices() {
    let Some((env, id)) = busybox() else { return };
    let (code, out, err) = sh(
        &env,
        &id,
        &[],
        "echo 1 > /proc/sys/kernel/hostname 2>/dev/null && echo writable; touch /sys/x 2>/dev/null && echo sys-writable; \
         for d in null zero full random urandom tty console ptmx pts shm; do [ -e /dev/$d ] || echo missing $d; done; \
         head -c 4 /dev/zero | wc -c; cat /etc/hostname; grep -c localhost /etc/hosts",
    );
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("writable") && !out.contains("missing"), "{out}");
    assert!(out.contains("4\n") && out.contains("rkt-"), "{out}");
}

#[test]
fn environment_follows_rkt_precedence() {
    let Some((env, id)) = busybox() else { return };
    let file = env.write("env-file", b"# comment\nFROM_FILE=file\nOVER=file\n");
    let mut cmd = env.cmd(&[
        "run",
        "--net=host",
        "--inherit-env",
        &format!("--set-env-file={}", file.display()),
        "--set-env=OVER=set-env",
        "--set-env=ONLY_SET=yes",
        &id,
        "--environment=ONLY_SET=environment",
        "--exec=/bin/sh",
        "--",
        "-c",
        "echo $HOST_VAR $FROM_FILE $OVER $ONLY_SET $AC_APP_NAME $HOME $PATH",
    ]);
    let out = cmd.env("HOST_VAR", "inherited").env("OVER", "host").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "inherited file set-env environment busybox /root /bin:/sbin:/usr/bin:/usr/sbin\n"
    );
}

#[test]
fn users_and_groups_come_from_the_image() {
    let Some((env, id)) = busybox() else { return };
    let (code, out, err) = sh(&env, &id, &[], "id -u; id -g; grep CapEff /proc/self/status");
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("0\n0\n"), "{out}");
    let out = env.rkt(&[
        "run",
        "--net=host",
        &id,
        "--user=nobody",
        "--group=nogroup",
        "--exec=/bin/sh",
        "--",
        "-c",
        "id -u; id -g; grep CapEff /proc/self/status; echo $USER",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("65534\n65534\nCapEff:\t0000000000000000\nnobody"), "{text}");
    let out = env.rkt(&["run", "--net=host", &id, "--user=ghost"]);
    assert_eq!(out.status.code(), Some(254));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ghost"));
}

#[test]
fn capabilities_and_no_new_privs() {
    let Some((env, id)) = busybox() else { return };
    let (_, out, _) = sh(&env, &id, &[], "grep -E '^(CapBnd|NoNewPrivs)' /proc/self/status");
    assert!(out.contains("CapBnd:\t00000000a80425fb") && out.contains("NoNewPrivs:\t1"), "{out}");
    let (_, out, _) = sh(&env, &id, &["--caps-retain=CAP_KILL,CAP_NET_ADMIN"], "grep CapBnd /proc/self/status");
    assert_eq!(out.trim(), "CapBnd:\t0000000000001020");
    let (_, out, _) = sh(&env, &id, &["--caps-remove=CAP_NET_RAW"], "grep CapBnd /proc/self/status");
    assert_eq!(out.trim(), "CapBnd:\t00000000a80405fb");
}

#[test]
fn volumes_host_read_only_and_empty() {
    let Some((env, id)) = busybox() else { return };
    let host = env.path("shared");
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("in"), "from host\n").unwrap();
    let ro = env.path("ro");
    std::fs::create_dir(&ro).unwrap();
    let (code, out, err) = sh(
        &env,
        &id,
        &[
            &format!("--volume=data,kind=host,source={}", host.display()),
            &format!("--volume=ro,kind=host,source={},readOnly=true", ro.display()),
            "--volume=scratch,kind=empty,mode=0700",
            "--mount=volume=data,target=/data",
            "--mount=volume=ro,target=/ro",
            "--mount=volume=scratch,target=/scratch",
        ],
        "cat /data/in; echo from pod > /data/out; touch /ro/x 2>/dev/null || echo ro-refused; stat -c %a /scratch; touch /scratch/ok && echo scratch-ok",
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "from host\nro-refused\n700\nscratch-ok\n");
    assert_eq!(std::fs::read_to_string(host.join("out")).unwrap(), "from pod\n");
    assert!(!ro.join("x").exists());
}

#[test]
fn a_memory_limit_stops_an_allocator() {
    let Some((env, id)) = busybox() else { return };
    let (code, _, _) = sh(&env, &id, &["--memory=16M"], "x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo ${#x}");
    assert_eq!(code, 137, "the allocator is killed by the OOM killer");
    let (code, out, _) = sh(&env, &id, &[], "x=$(head -c 30000000 /dev/zero | tr '\\0' a); echo ${#x}");
    assert_eq!((code, out.trim()), (0, "30000000"));
}

/// rkt raises its own soft limit of open files (deep trees need it), not the app's.
#[test]
fn the_app_gets_the_open_file_limit_rkt_was_started_with() {
    let Some((env, id)) = busybox() else { return };
    let args = ["run", "--net=host", &id, "--exec=/bin/sh", "--", "-c", "ulimit -Sn; ulimit -Hn"];
    let out = env.cmd_with_open_files(&args, 1000).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut hard = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct it is given.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut hard) };
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("1000\n{}\n", hard.rlim_max));
}

#[test]
fn the_app_inherits_only_stdio_and_cannot_write_the_rkt_binary() {
    let Some((env, id)) = busybox() else { return };
    let rkt_before = std::fs::read(env!("CARGO_BIN_EXE_rkt")).unwrap();
    let (code, out, err) = sh(
        &env,
        &id,
        &[],
        "\
         for p in /proc/[0-9]*; do echo x >> $p/exe 2>/dev/null && echo wrote $p; cat $p/exe >/dev/null 2>&1 && echo read $p; done; \
         readlink /proc/1/root; readlink /proc/1/exe || echo no-exe; cd /proc/1/cwd 2>/dev/null && echo cwd-open; pwd",
    );
    assert_eq!(code, 0, "{err}");
    // The app exec'd straight by the init lists its own fds: stdio, and the directory it reads.
    let fds = env.ok(&["run", "--net=host", &id, "--exec=/bin/busybox", "--", "ls", "/proc/self/fd"]);
    assert_eq!(fds.split_whitespace().collect::<Vec<_>>(), ["0", "1", "2", "3"]);
    assert!(!out.contains("wrote"), "{out}");
    assert!(!out.contains("read /proc/1"), "{out}");
    assert!(!out.contains("cwd-open"), "{out}");
    assert!(out.trim_end().ends_with('/'), "{out}");
    assert!(std::fs::read(env!("CARGO_BIN_EXE_rkt")).unwrap() == rkt_before, "the rkt binary changed");
}

#[test]
fn image_symlinks_cannot_redirect_mounts_onto_the_host() {
    let Some((env, _)) = busybox() else { return };
    let sentinel = env.path("sentinel");
    std::fs::create_dir(&sentinel).unwrap();
    std::fs::write(sentinel.join("hosts"), "host file").unwrap();
    let before = Snapshot::of(&sentinel);
    let s = sentinel.to_str().unwrap();
    let mut t = Tar::new();
    t.manifest(&manifest_json(
        "example.com/evil",
        r#""app":{"exec":["/bin/busybox","sh","-c","echo ran; cat /etc/hosts | head -n1"],"user":"0","group":"0"}"#,
    ))
    .dir("rootfs")
    .dir("rootfs/bin")
    .file_mode("rootfs/bin/busybox", &std::fs::read("/bin/busybox").unwrap(), 0o755, 0, 0)
    .symlink("rootfs/bin/sh", "busybox")
    .symlink("rootfs/dev", s)
    .symlink("rootfs/proc", s)
    .symlink("rootfs/sys", s)
    .dir("rootfs/etc")
    .symlink("rootfs/etc/hosts", &format!("{s}/hosts"))
    .symlink("rootfs/etc/hostname", &format!("{s}/hostname"));
    let id = env.fetch(&t.finish(), "evil.aci");
    let out = env.rkt(&["run", "--net=host", &id]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ran\n127.0.0.1"));
    assert_eq!(Snapshot::of(&sentinel), before, "the host path behind the image's symlinks changed");
}

#[test]
fn nothing_is_left_on_the_host_after_the_pod() {
    let Some((env, id)) = busybox() else { return };
    let (code, _, err) = sh(&env, &id, &["--memory=64M", "--cpu=500m"], "true");
    assert_eq!(code, 0, "{err}");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(env.store().to_str().unwrap()), "a mount of the pod is left: {mounts}");
    let uuid = env.ok(&["list", "--full", "--no-legend"]).split('\t').next().unwrap().to_string();
    for controller in ["memory", "cpu"] {
        let found = std::process::Command::new("find")
            .args([&format!("/sys/fs/cgroup/{controller}"), "-name", &format!("rkt-{uuid}")])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&found.stdout), "", "cgroup left in {controller}");
    }
}

#[test]
fn signals_reach_the_app_and_stop_ends_the_pod() {
    let Some((env, id)) = busybox() else { return };
    let (child, uuid) =
        start_pod(&env, &id, "trap 'echo got TERM; exit 3' TERM; echo ready; while true; do sleep 0.1; done");
    let status = env.ok(&["status", &uuid]);
    assert!(status.contains("state=running") && status.contains("pid="), "{status}");
    std::thread::sleep(Duration::from_millis(300));
    let stopped = env.ok(&["stop", &uuid]);
    assert_eq!(stopped.trim(), format!("{uuid:?}"));
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("got TERM"));
    let status = env.ok(&["status", "--wait", &uuid]);
    assert!(status.contains("state=exited") && status.contains("app-busybox=3"), "{status}");
    let json: serde_json::Value = serde_json::from_str(&env.ok(&["status", "--format=json", &uuid])).unwrap();
    assert_eq!(json["apps"][0]["exit_code"], 3);
}

#[test]
fn enter_is_no_stronger_than_the_app() {
    let Some((env, id)) = busybox() else { return };
    let shared = env.path("shared");
    std::fs::create_dir(&shared).unwrap();
    let uuid_file = env.path("uuid");
    let mut child = env
        .cmd(&[
            "run",
            "--net=host",
            &format!("--uuid-file-save={}", uuid_file.display()),
            &format!("--volume=s,kind=host,source={}", shared.display()),
            &id,
            "--memory=64M",
            "--caps-remove=CAP_CHOWN",
            "--mount=volume=s,target=/s",
            "--exec=/bin/sh",
            "--",
            "-c",
            "grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status > /s/app; cat /proc/self/cgroup | grep memory > /s/app-cg; sleep 30",
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if shared.join("app-cg").exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let uuid = std::fs::read_to_string(&uuid_file).unwrap();
    let entered =
        env.ok(&["enter", &uuid, "/bin/sh", "-c", "grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status; hostname"]);
    let app = std::fs::read_to_string(shared.join("app")).unwrap();
    assert_eq!(entered.lines().take(3).collect::<Vec<_>>(), app.lines().collect::<Vec<_>>());
    assert!(entered.lines().nth(3).unwrap().starts_with("rkt-"));
    let cg = env.ok(&["enter", &uuid, "/bin/sh", "-c", "cat /proc/self/cgroup | grep memory"]);
    assert_eq!(cg, std::fs::read_to_string(shared.join("app-cg")).unwrap());
    env.ok(&["stop", "--force", &uuid]);
    child.wait().unwrap();
}

#[test]
fn prepare_run_prepared_list_cat_manifest_rm_and_gc() {
    let Some((env, id)) = busybox() else { return };
    let uuid = env.ok(&["prepare", &id, "--exec=/bin/sh", "--", "-c", "exit 5"]).trim().to_string();
    assert_eq!(uuid.len(), 36);
    assert!(env.ok(&["status", &uuid]).contains("state=prepared"));
    let manifest: serde_json::Value = serde_json::from_str(&env.ok(&["cat-manifest", &uuid])).unwrap();
    assert_eq!(manifest["acKind"], "PodManifest");
    assert_eq!(manifest["apps"][0]["image"]["id"], id.as_str());
    let out = env.rkt(&["run-prepared", "--net=host", &uuid[..8]]);
    assert_eq!(out.status.code(), Some(5));
    let list = env.ok(&["list"]);
    assert!(list.contains(&uuid[..8]) && list.contains("exited") && list.contains("rkt.local/busybox"), "{list}");
    let running = env.rkt(&["rm", "nosuchpod"]);
    assert!(String::from_utf8_lossy(&running.stderr).contains("no matches found"));
    env.ok(&["gc", "--grace-period=1h"]);
    assert!(env.ok(&["status", &uuid]).contains("state=exited garbage"));
    env.ok(&["gc", "--grace-period=0s"]);
    assert!(env.rkt(&["status", &uuid]).status.code() == Some(254));
    let second = env.ok(&["prepare", &id]).trim().to_string();
    assert_eq!(env.ok(&["rm", &second]).trim(), format!("{second:?}"));
    assert_eq!(env.ok(&["list", "--no-legend"]), "");
}

fn cni_available() -> bool {
    let ok = std::path::Path::new("/usr/lib/cni/ptp").exists() || std::path::Path::new("/opt/cni/bin/ptp").exists();
    if !ok {
        eprintln!("skipping: CNI plugins are missing (apt-get install containernetworking-plugins iptables)");
    }
    ok
}

fn veths() -> usize {
    let out = std::process::Command::new("ip").args(["-o", "link", "show", "type", "veth"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().count()
}

#[test]
fn the_default_network_reaches_a_server_on_the_host() {
    let Some((env, id)) = busybox() else { return };
    if !cni_available() {
        return;
    }
    let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        std::io::Write::write_all(&mut conn, b"hello from the host\n").unwrap();
    });
    let before = veths();
    let uuid_file = env.path("uuid");
    let out = env.rkt(&[
        "run",
        &format!("--uuid-file-save={}", uuid_file.display()),
        &id,
        "--exec=/bin/sh",
        "--",
        "-c",
        &format!("ls /sys/class/net | tr '\\n' ' '; echo; nc 172.16.28.1 {port} </dev/null"),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "eth0 lo \nhello from the host\n");
    server.join().unwrap();
    let uuid = std::fs::read_to_string(&uuid_file).unwrap();
    assert!(env.ok(&["status", &uuid]).contains("networks=default:ip4=172.16.28."));
    assert_eq!(veths(), before, "a veth of the pod is left on the host");
}

#[test]
fn ports_are_published_on_the_host() {
    let Some((env, _)) = busybox() else { return };
    if !cni_available() {
        return;
    }
    let mut t = Tar::new();
    t.manifest(&manifest_json(
        "example.com/web",
        r#""app":{"exec":["/bin/busybox","sh","-c","echo published | /bin/busybox nc -l -p 8080"],"user":"0","group":"0",
            "ports":[{"name":"http","protocol":"tcp","port":8080}]}"#,
    ))
    .dir("rootfs")
    .dir("rootfs/bin")
    .file_mode("rootfs/bin/busybox", &std::fs::read("/bin/busybox").unwrap(), 0o755, 0, 0);
    let id = env.fetch(&t.finish(), "web.aci");
    let host_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = env.cmd(&["run", &format!("--port=http:{host_port}"), &id]).stdout(Stdio::null()).spawn().unwrap();
    let mut answer = String::new();
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(100));
        if let Ok(mut conn) = std::net::TcpStream::connect(("127.0.0.1", host_port)) {
            let _ = std::io::Read::read_to_string(&mut conn, &mut answer);
            if !answer.is_empty() {
                break;
            }
        }
    }
    assert_eq!(answer, "published\n");
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let rules = std::process::Command::new("iptables").args(["-t", "nat", "-S"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&rules.stdout).contains(&format!("--dport {host_port}")), "a port rule is left");
    assert!(env.rkt(&["run", "--port=nope:1234", &id]).status.code() == Some(254));
}

#[test]
fn several_apps_the_first_failure_decides_and_stops_the_rest() {
    let Some((env, id)) = busybox() else { return };
    let out = env.rkt(&[
        "run",
        "--net=host",
        &id,
        "--name=waits",
        "--exec=/bin/sh",
        "--",
        "-c",
        "trap 'exit 0' TERM; while true; do sleep 0.1; done",
        "---",
        &id,
        "--name=fails",
        "--exec=/bin/sh",
        "--",
        "-c",
        "sleep 0.3; exit 9",
    ]);
    assert_eq!(out.status.code(), Some(9), "{}", String::from_utf8_lossy(&out.stderr));
    let uuid = env.ok(&["list", "--full", "--no-legend"]).split('\t').next().unwrap().to_string();
    let status = env.ok(&["status", &uuid]);
    assert!(status.contains("app-fails=9") && status.contains("app-waits=0"), "{status}");
    // As rkt lists a pod: its own columns on its first app's row only.
    let list = env.ok(&["list", "--no-legend"]);
    let rows: Vec<&str> = list.lines().collect();
    assert_eq!(rows.len(), 2, "{list}");
    assert!(rows[0].starts_with(&uuid[..8]) && rows[0].contains("waits") && rows[0].contains("exited"), "{list}");
    assert!(rows[1].starts_with('\t') && rows[1].contains("fails") && !rows[1].contains("exited"), "{list}");
    let out = env.rkt(&["run", "--net=host", &id, "--exec=/bin/true", &id]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("multiple apps with name busybox"));
    // The pod that run left unprepared has no apps yet: a row of dashes, as in rkt.
    let list = env.ok(&["list", "--no-legend"]);
    let aborted = list.lines().find(|r| r.contains("aborted prepare")).unwrap_or_else(|| panic!("{list}"));
    let columns: Vec<&str> = aborted.split('\t').filter(|c| !c.is_empty()).collect();
    assert_eq!(columns[1..3], ["-", "-"], "{list}");
    let both =
        env.rkt(&["run", "--net=host", &id, "--name=a", "--exec=/bin/true", &id, "--name=b", "--exec=/bin/true"]);
    assert!(both.status.success());
}

/// `rkt image gc` keeps the image of a prepared pod and of a running one (whose tree it mounts),
/// however long ago the image was last used, and `rkt image rm` refuses it; once no pod needs
/// it, it goes.
#[test]
fn image_gc_keeps_the_images_of_prepared_and_running_pods() {
    let Some((env, id)) = busybox() else { return };
    let kept = |env: &Env| env.ok(&["image", "list", "--full"]).contains(&id);

    let prepared = env.ok(&["prepare", &id]).trim().to_string();
    env.age_images(&[], 2);
    env.ok(&["image", "gc"]);
    assert!(kept(&env), "the prepared pod's image was removed");
    // Nor can it be removed by hand while the pod is there.
    let refused = |env: &Env| {
        let out = env.rkt(&["image", "rm", &id]);
        let said = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(254), "{said}");
        assert!(said.contains("in use by a prepared or running pod"), "{said}");
    };
    refused(&env);
    assert!(kept(&env));
    env.ok(&["rm", &prepared]);

    let (mut child, uuid) = start_pod(&env, &id, "sleep 30");
    env.age_images(&[], 2);
    env.ok(&["image", "gc"]);
    assert!(kept(&env), "the running pod's image was removed");
    assert_eq!(env.ok(&["enter", &uuid, "/bin/sh", "-c", "echo still there"]), "still there\n");
    refused(&env);
    env.ok(&["stop", "--force", &uuid]);
    child.wait().unwrap();

    env.age_images(&[], 2);
    env.ok(&["image", "gc"]);
    assert!(!kept(&env), "an image no pod needs stayed");
}
