//! A real web server on 127.0.0.1 (testdata/http_server.py), plain or with TLS from a CA made
//! for the test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Web {
    child: Child,
    pub port: u16,
    pub routes: PathBuf,
    log: PathBuf,
    pub scheme: &'static str,
}

/// Runs openssl in `dir`, insisting that it succeeds.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().unwrap();
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A key `NAME.key` and a certificate `cert` for `subject` with the `extensions`, signed by the
/// CA `make_ca` made in `dir`.
fn issue(dir: &Path, name: &str, cert: &str, subject: &str, extensions: &str) {
    let (key, csr, ext) = (format!("{name}.key"), format!("{name}.csr"), format!("{name}.cnf"));
    openssl(dir, &["req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj", subject]);
    std::fs::write(dir.join(&ext), extensions).unwrap();
    openssl(
        dir,
        &["x509", "-req", "-in", &csr, "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", cert]
            .into_iter()
            .chain(["-days", "2", "-extfile", &ext])
            .collect::<Vec<_>>(),
    );
}

/// A CA and a certificate for 127.0.0.1 signed by it: (ca.pem, cert.pem, key.pem).
pub fn make_ca(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let ca = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem"];
    openssl(dir, &ca.into_iter().chain(["-days", "2", "-subj", "/CN=rkt test CA"]).collect::<Vec<_>>());
    let server = "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:example.com\nbasicConstraints=CA:FALSE\n";
    issue(dir, "server", "cert.pem", "/CN=127.0.0.1", server);
    std::fs::rename(dir.join("server.key"), dir.join("key.pem")).unwrap();
    (dir.join("ca.pem"), dir.join("cert.pem"), dir.join("key.pem"))
}

/// A client certificate signed by the CA `make_ca` made in `dir`: (client.cert, client.key).
pub fn make_client_cert(dir: &Path) -> (PathBuf, PathBuf) {
    issue(dir, "client", "client.cert", "/CN=rkt", "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n");
    (dir.join("client.cert"), dir.join("client.key"))
}

impl Web {
    pub fn start(dir: &Path, tls: Option<(&Path, &Path)>) -> Web {
        std::fs::create_dir_all(dir).unwrap();
        let routes = dir.join("routes.json");
        std::fs::write(&routes, "{}").unwrap();
        let log = dir.join("requests.log");
        std::fs::write(&log, "").unwrap();
        let portfile = dir.join("port");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/http_server.py");
        let mut cmd = Command::new("python3");
        cmd.arg(script).arg(&routes).arg(&log).arg(&portfile);
        if let Some((cert, key)) = tls {
            cmd.arg(cert).arg(key);
        }
        let child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let mut web = Web { child, port: 0, routes, log, scheme: if tls.is_some() { "https" } else { "http" } };
        for _ in 0..200 {
            if let Ok(p) = std::fs::read_to_string(&portfile) {
                web.port = p.trim().parse().unwrap();
                return web;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("the test web server did not start");
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}://127.0.0.1:{}{path}", self.scheme, self.port)
    }

    pub fn route(&self, path: &str, route: serde_json::Value) {
        let mut all: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&self.routes).unwrap()).unwrap();
        all[path] = route;
        std::fs::write(&self.routes, all.to_string()).unwrap();
    }

    pub fn requests(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }
}

impl Drop for Web {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
