//! `--net=default`: the pod's network namespace joined to the host by CNI plugins (ptp with
//! host-local addresses and masquerading; portmap for `--port`), run as the CNI spec says:
//! one process per plugin, configuration on stdin, result on stdout.

use std::io::Write;
use std::path::{Path, PathBuf};

use std::process::{Command, Stdio};

use serde_json::{json, Value};

/// Where Debian's containernetworking-plugins and the upstream tarball put the plugins.
const PLUGIN_DIRS: &[&str] = &["/usr/lib/cni", "/opt/cni/bin"];
pub const DEFAULT_SUBNET: &str = "172.16.28.0/24";

/// A published port: traffic to `host_port` on the host reaches `pod_port` in the pod.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PortMapping {
    pub host_ip: Option<String>,
    pub host_port: u16,
    pub pod_port: u16,
    pub protocol: String,
}

fn plugin_dir() -> Result<PathBuf, String> {
    PLUGIN_DIRS.iter().map(PathBuf::from).find(|d| d.join("ptp").exists()).ok_or_else(|| {
        "CNI plugins not found in /usr/lib/cni or /opt/cni/bin (apt-get install containernetworking-plugins)".into()
    })
}

/// rkt's default network. Its addresses are a host-wide resource, kept where host-local keeps
/// them by default (`/var/lib/cni/networks/rkt.default`), whichever store a pod comes from.
pub fn default_network(ports: &[PortMapping]) -> Value {
    let mut plugins = vec![json!({
        "type": "ptp",
        "ipMasq": true,
        "ipam": {
            "type": "host-local",
            "subnet": DEFAULT_SUBNET,
            "routes": [{"dst": "0.0.0.0/0"}],
        },
    })];
    if !ports.is_empty() {
        plugins.push(json!({"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}));
    }
    json!({"cniVersion": "0.4.0", "name": "rkt.default", "plugins": plugins})
}

fn exec_plugin(dir: &Path, command: &str, container_id: &str, netns: &Path, config: &Value) -> Result<Value, String> {
    let kind = config["type"].as_str().ok_or("a CNI plugin configuration without type")?;
    let mut child = Command::new(dir.join(kind))
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", container_id)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("CNI plugin {kind}: {e}"))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(config.to_string().as_bytes())
        .map_err(|e| format!("CNI plugin {kind}: {e}"))?;
    let out = child.wait_with_output().map_err(|e| format!("CNI plugin {kind}: {e}"))?;
    let result: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    if !out.status.success() {
        let msg = result["msg"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| String::from_utf8_lossy(&out.stderr).trim().to_string());
        return Err(format!("CNI plugin {kind} {command}: {msg}"));
    }
    Ok(result)
}

/// Each plugin's configuration as the runtime hands it over: the list's name and version,
/// the previous plugin's result, and the runtime's capability arguments.
fn plugin_config(list: &Value, plugin: &Value, prev: Option<&Value>, ports: &[PortMapping]) -> Value {
    let mut conf = plugin.clone();
    conf["cniVersion"] = list["cniVersion"].clone();
    conf["name"] = list["name"].clone();
    if let Some(prev) = prev {
        conf["prevResult"] = prev.clone();
    }
    if plugin["capabilities"]["portMappings"] == json!(true) {
        let mappings: Vec<Value> = ports
            .iter()
            .map(|p| {
                json!({"hostPort": p.host_port, "containerPort": p.pod_port, "protocol": p.protocol,
                       "hostIP": p.host_ip.clone().unwrap_or_default()})
            })
            .collect();
        conf["runtimeConfig"] = json!({"portMappings": mappings});
    }
    conf
}

/// Adds the pod at `netns` to the network; returns the last plugin's result.
pub fn add(list: &Value, container_id: &str, netns: &Path, ports: &[PortMapping]) -> Result<Value, String> {
    let dir = plugin_dir()?;
    let mut prev: Option<Value> = None;
    let plugins = list["plugins"].as_array().cloned().unwrap_or_default();
    for (i, plugin) in plugins.iter().enumerate() {
        let conf = plugin_config(list, plugin, prev.as_ref(), ports);
        match exec_plugin(&dir, "ADD", container_id, netns, &conf) {
            Ok(result) => prev = Some(result),
            Err(e) => {
                // Undo what the earlier plugins did.
                let _ = del_plugins(&dir, list, &plugins[..i], container_id, netns, prev.as_ref(), ports);
                return Err(e);
            }
        }
    }
    Ok(prev.unwrap_or(Value::Null))
}

fn del_plugins(
    dir: &Path,
    list: &Value,
    plugins: &[Value],
    container_id: &str,
    netns: &Path,
    prev: Option<&Value>,
    ports: &[PortMapping],
) -> Result<(), String> {
    let mut first_error = None;
    for plugin in plugins.iter().rev() {
        let conf = plugin_config(list, plugin, prev, ports);
        if let Err(e) = exec_plugin(dir, "DEL", container_id, netns, &conf) {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Removes the pod from the network, in the reverse order of `add`.
pub fn del(
    list: &Value,
    container_id: &str,
    netns: &Path,
    prev: Option<&Value>,
    ports: &[PortMapping],
) -> Result<(), String> {
    let dir = plugin_dir()?;
    let plugins = list["plugins"].as_array().cloned().unwrap_or_default();
    del_plugins(&dir, list, &plugins, container_id, netns, prev, ports)
}

/// The pod's IPv4 address from a CNI result, as `rkt status` prints it.
pub fn ipv4(result: &Value) -> Option<String> {
    result["ips"].as_array()?.iter().find_map(|ip| {
        let addr = ip["address"].as_str()?;
        addr.contains('.').then(|| addr.split('/').next().unwrap_or(addr).to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_for_each_plugin() {
        let ports = vec![PortMapping { host_ip: None, host_port: 8080, pod_port: 80, protocol: "tcp".into() }];
        let list = default_network(&ports);
        let plugins = list["plugins"].as_array().unwrap();
        assert_eq!(plugins.len(), 2);
        let prev = json!({"ips": [{"address": "172.16.28.2/24"}]});
        let conf = plugin_config(&list, &plugins[1], Some(&prev), &ports);
        assert_eq!(conf["name"], "rkt.default");
        assert_eq!(conf["runtimeConfig"]["portMappings"][0]["containerPort"], 80);
        assert_eq!(conf["prevResult"], prev);
        assert_eq!(ipv4(&prev).as_deref(), Some("172.16.28.2"));
        assert_eq!(default_network(&[])["plugins"].as_array().unwrap().len(), 1);
    }
}
