//! Debian's docker-registry, started on 127.0.0.1 with its own config and storage for a test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Registry {
    child: Child,
    pub addr: String,
    pub dir: PathBuf,
    log: PathBuf,
}

impl Registry {
    /// Starts a registry, or says why it cannot and returns `None`.
    pub fn start(dir: &Path) -> Option<Registry> {
        Self::start_with(dir, None)
    }

    /// Starts a registry that wants `user`/`password` (htpasswd, bcrypt).
    pub fn start_with_basic_auth(dir: &Path, user: &str, password: &str) -> Option<Registry> {
        Self::start_with(dir, Some((user, password)))
    }

    /// Starts a registry behind basic auth that redirects blob downloads to `blob_host`
    /// (docker-registry's redirect middleware).
    pub fn start_redirecting(dir: &Path, user: &str, password: &str, blob_host: &str) -> Option<Registry> {
        Self::start_full(dir, Some((user, password)), Some(blob_host), "")
    }

    /// Starts a registry that takes only bearer tokens from `realm`, signed by the key of the
    /// certificate `bundle` (docker-registry's token auth). Its storage is `dir`'s, so images
    /// pushed into a registry started there before are in it.
    pub fn start_with_token_auth(
        dir: &Path,
        realm: &str,
        service: &str,
        issuer: &str,
        bundle: &Path,
    ) -> Option<Registry> {
        let auth = format!(
            "auth:\n  token:\n    realm: {realm}\n    service: {service}\n    issuer: {issuer}\n    rootcertbundle: {}\n",
            bundle.display()
        );
        Self::start_full(dir, None, None, &auth)
    }

    /// Starts a registry on https with `cert` and `key` that takes only clients whose
    /// certificate `client_ca` signed. Its storage is `dir`'s, as for `start_with_token_auth`.
    pub fn start_with_client_certs(dir: &Path, cert: &Path, key: &Path, client_ca: &Path) -> Option<Registry> {
        let tls = format!(
            "  tls:\n    certificate: {}\n    key: {}\n    clientcas:\n      - {}\n",
            cert.display(),
            key.display(),
            client_ca.display()
        );
        Self::start_full(dir, None, None, &tls)
    }

    /// Behind basic auth, taking manifests whose layers name `urls` on 127.0.0.1 (Docker's
    /// foreign layers): skopeo then pushes such a layer's descriptor without its blob.
    pub fn start_allowing_layer_urls(dir: &Path, user: &str, password: &str) -> Option<Registry> {
        let validation = "validation:\n  manifests:\n    urls:\n      allow:\n        - ^http://127\\.0\\.0\\.1\n";
        Self::start_full(dir, Some((user, password)), None, validation)
    }

    /// Taking Docker schema 1 manifests, as registries did before 2019 and as old pushes still
    /// are in many.
    pub fn start_with_schema1(dir: &Path) -> Option<Registry> {
        Self::start_full(dir, None, None, "compatibility:\n  schema1:\n    enabled: true\n")
    }

    fn start_with(dir: &Path, basic: Option<(&str, &str)>) -> Option<Registry> {
        Self::start_full(dir, basic, None, "")
    }

    /// `extra` goes at the end of the config, where it continues the `http` section when it is
    /// indented and starts sections of its own when it is not.
    fn start_full(dir: &Path, basic: Option<(&str, &str)>, redirect: Option<&str>, extra: &str) -> Option<Registry> {
        if Command::new("docker-registry").arg("--version").output().is_err()
            || Command::new("skopeo").arg("--version").output().is_err()
        {
            eprintln!("skipping: needs docker-registry and skopeo (apt-get install docker-registry skopeo)");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr = format!("127.0.0.1:{port}");
        std::fs::create_dir_all(dir).unwrap();
        let config = dir.join("config.yml");
        let mut text =
            format!("version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n", dir.join("data").display());
        if extra.starts_with(' ') {
            text.push_str(extra);
        }
        if let Some((user, password)) = basic {
            let Ok(out) = Command::new("htpasswd").args(["-Bbn", user, password]).output() else {
                eprintln!("skipping: needs htpasswd (apt-get install apache2-utils)");
                return None;
            };
            std::fs::write(dir.join("htpasswd"), out.stdout).unwrap();
            text.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
                dir.join("htpasswd").display()
            ));
        }
        if let Some(base) = redirect {
            text.push_str(&format!(
                "middleware:\n  storage:\n    - name: redirect\n      options:\n        baseurl: {base}\n"
            ));
        }
        if !extra.starts_with(' ') {
            text.push_str(extra);
        }
        std::fs::write(&config, text).unwrap();
        let log = dir.join("log");
        let mut child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
            .stderr(Stdio::from(std::fs::File::options().append(true).open(&log).unwrap()))
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if std::net::TcpStream::connect(&addr).is_ok() {
                return Some(Registry { child, addr, dir: dir.to_path_buf(), log });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("docker-registry did not start: {}", std::fs::read_to_string(&log).unwrap_or_default());
    }

    /// Pushes an image with skopeo, from any transport skopeo reads.
    pub fn push(&self, from: &str, repo_tag: &str) {
        self.push_as(from, repo_tag, None);
    }

    pub fn push_as(&self, from: &str, repo_tag: &str, creds: Option<&str>) {
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "-q", "--dest-tls-verify=false"]);
        if let Some(c) = creds {
            cmd.args(["--dest-creds", c]);
        }
        let out = cmd.args([from, &format!("docker://{}/{repo_tag}", self.addr)]).output().unwrap();
        assert!(out.status.success(), "skopeo push: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// How many blob requests rkt has made so far.
    pub fn blob_requests(&self) -> usize {
        self.rkt_requests("GET", "blobs")
    }

    /// How many manifest requests, GET or HEAD, rkt has made so far.
    pub fn manifest_requests(&self) -> usize {
        self.manifest_gets() + self.rkt_requests("HEAD", "manifests")
    }

    pub fn manifest_gets(&self) -> usize {
        self.rkt_requests("GET", "manifests")
    }

    /// Lines of the registry's access log for rkt's `method` requests of `/v2/…/<kind>/…`.
    fn rkt_requests(&self, method: &str, kind: &str) -> usize {
        let log = std::fs::read(&self.log).unwrap_or_default();
        let (part, request) = (format!("/{kind}/"), format!("\"{method} /v2/"));
        String::from_utf8_lossy(&log)
            .lines()
            .filter(|l| l.starts_with("127.0.0.1") && l.contains(&request) && l.contains(&part) && l.contains("rkt/"))
            .count()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A layer of `etc` and these files.
pub fn layer(files: &[(&str, &str)]) -> Vec<u8> {
    let mut t = super::Tar::new();
    t.dir("etc");
    for (name, content) in files {
        t.file(name, content.as_bytes());
    }
    t.finish()
}

/// A configuration directory whose auth.d gives `registry` these credentials.
pub fn docker_auth(env: &super::Env, registry: &str, user: &str, password: &str) -> std::path::PathBuf {
    let config = env.path("config");
    std::fs::create_dir_all(config.join("auth.d")).unwrap();
    let json = serde_json::json!({"rktKind": "dockerAuth", "rktVersion": "v1", "registries": [registry],
        "credentials": {"user": user, "password": password}});
    std::fs::write(config.join("auth.d/docker.json"), json.to_string()).unwrap();
    config
}

/// Renders the root filesystem of the image whose ID `rkt fetch` printed in `out`.
pub fn render_fetched(env: &super::Env, out: &std::process::Output) -> std::path::PathBuf {
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let rendered = env.path("r");
    env.ok(&["image", "render", "--rootfs-only", &id, rendered.to_str().unwrap()]);
    rendered
}
