//! Minimal CNI runtime: runs a conflist's plugins as executables (spec 1.0.0).

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::{io_err, Ipv4Cidr, NetError, PortMapping, Result};
use skiff_semantics::cidr::Ipv4Net;

pub(crate) const CNI_VERSION: &str = "1.0.0";

pub(crate) fn default_conflist(
    name: &str,
    bridge: &str,
    cidr: &Ipv4Cidr,
    ipam_dir: &Path,
) -> Value {
    json!({
        "cniVersion": CNI_VERSION,
        "name": name,
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": true,
                // Masquerade is the service proxy's job (later); never touch host NAT here.
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{ "subnet": cidr.to_string() }]],
                    "routes": [{ "dst": "0.0.0.0/0" }],
                    "dataDir": ipam_dir,
                }
            },
            {
                "type": "portmap",
                "capabilities": { "portMappings": true }
            }
        ]
    })
}

pub(crate) fn runtime_config(mappings: &[PortMapping]) -> Value {
    let pm: Vec<Value> = mappings
        .iter()
        .map(|m| {
            let mut v = json!({
                "hostPort": m.host_port,
                "containerPort": m.container_port,
                "protocol": m.protocol.to_ascii_lowercase(),
            });
            if let Some(ip) = m.host_ip.as_deref().filter(|s| !s.is_empty()) {
                v["hostIP"] = json!(ip);
            }
            v
        })
        .collect();
    json!({ "portMappings": pm })
}

pub(crate) struct Runner<'a> {
    pub bin_dir: &'a Path,
    pub conflist: &'a Value,
}

impl Runner<'_> {
    fn plugins(&self) -> &[Value] {
        self.conflist["plugins"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The stdin config of one plugin: its own fields plus name/cniVersion, prevResult and the
    /// runtimeConfig keys it declared capabilities for.
    fn plugin_config(&self, plugin: &Value, rc: &Value, prev: Option<&Value>) -> Value {
        let mut conf = plugin.clone();
        conf["cniVersion"] = self.conflist["cniVersion"].clone();
        conf["name"] = self.conflist["name"].clone();
        if let Some(caps) = plugin["capabilities"].as_object() {
            let mut runtime = serde_json::Map::new();
            for (cap, on) in caps {
                if on.as_bool() == Some(true) {
                    if let Some(v) = rc.get(cap) {
                        runtime.insert(cap.clone(), v.clone());
                    }
                }
            }
            if !runtime.is_empty() {
                conf["runtimeConfig"] = Value::Object(runtime);
            }
        }
        if let (Some(prev), Some(obj)) = (prev, conf.as_object_mut()) {
            obj.insert("prevResult".into(), prev.clone());
        }
        conf
    }

    /// ADD through the list with chained results. `partial` holds the last successful result so
    /// the caller can DEL with it if a later plugin fails.
    pub fn add(
        &self,
        container_id: &str,
        netns: &Path,
        rc: &Value,
        partial: &mut Option<Value>,
    ) -> Result<Value> {
        for plugin in self.plugins() {
            let conf = self.plugin_config(plugin, rc, partial.as_ref());
            let out = self.exec(plugin, "ADD", container_id, Some(netns), &conf)?;
            let result: Value = serde_json::from_slice(&out).map_err(|e| NetError::Plugin {
                plugin: plugin_type(plugin).into(),
                command: "ADD".into(),
                message: format!(
                    "unparsable result ({e}): {}",
                    String::from_utf8_lossy(&out).trim()
                ),
            })?;
            *partial = Some(result);
        }
        partial
            .clone()
            .ok_or_else(|| NetError::Other("CNI conflist has no plugins".into()))
    }

    /// DEL in reverse order. Every plugin is run even if one fails; "not found"-style errors are
    /// ignored (DEL must be idempotent), the first other error is returned.
    pub fn del(
        &self,
        container_id: &str,
        netns: Option<&Path>,
        rc: &Value,
        prev: Option<&Value>,
    ) -> Result<()> {
        let mut first = None;
        for plugin in self.plugins().iter().rev() {
            let conf = self.plugin_config(plugin, rc, prev);
            match self.exec(plugin, "DEL", container_id, netns, &conf) {
                Ok(_) => {}
                Err(NetError::Plugin { ref message, .. }) if is_not_found(message) => {}
                Err(e) => {
                    first.get_or_insert(e);
                }
            }
        }
        first.map_or(Ok(()), Err)
    }

    fn exec(
        &self,
        plugin: &Value,
        command: &str,
        container_id: &str,
        netns: Option<&Path>,
        conf: &Value,
    ) -> Result<Vec<u8>> {
        let ty = plugin_type(plugin);
        let perr = |message: String| NetError::Plugin {
            plugin: ty.to_string(),
            command: command.to_string(),
            message,
        };
        if ty.is_empty() || ty.contains('/') {
            return Err(perr(format!("bad plugin type {:?}", plugin["type"])));
        }
        let stdin = serde_json::to_vec(conf).map_err(|e| perr(format!("serialize config: {e}")))?;
        let mut child = Command::new(self.bin_dir.join(ty))
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", container_id)
            .env(
                "CNI_NETNS",
                netns.map(|p| p.as_os_str()).unwrap_or_default(),
            )
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", self.bin_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(io_err(format!("spawn CNI plugin {ty}")))?;
        if let Some(mut input) = child.stdin.take() {
            // A plugin that exits early closes the pipe; its exit status tells the story.
            let _ = input.write_all(&stdin);
        }
        let out = child
            .wait_with_output()
            .map_err(io_err(format!("wait for CNI plugin {ty}")))?;
        if out.status.success() {
            return Ok(out.stdout);
        }
        Err(perr(error_message(&out.stdout, &out.stderr, out.status)))
    }
}

fn plugin_type(plugin: &Value) -> &str {
    plugin["type"].as_str().unwrap_or("")
}

/// A CNI error is `{"code", "msg", "details"}` on stdout; fall back to raw stdout/stderr.
fn error_message(stdout: &[u8], stderr: &[u8], status: std::process::ExitStatus) -> String {
    let mut parts = Vec::new();
    match serde_json::from_slice::<Value>(stdout) {
        Ok(v) if v.get("msg").is_some() => {
            parts.push(v["msg"].as_str().unwrap_or_default().to_string());
            if let Some(d) = v["details"].as_str().filter(|d| !d.is_empty()) {
                parts.push(format!("({d})"));
            }
            if let Some(c) = v["code"].as_u64() {
                parts.push(format!("[code {c}]"));
            }
        }
        _ => {
            let s = String::from_utf8_lossy(stdout);
            if !s.trim().is_empty() {
                parts.push(s.trim().to_string());
            }
        }
    }
    let e = String::from_utf8_lossy(stderr);
    if !e.trim().is_empty() {
        parts.push(format!("stderr: {}", e.trim()));
    }
    if parts.is_empty() {
        parts.push(format!("exited with {status}"));
    }
    parts.join(" ")
}

fn is_not_found(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    m.contains("not found") || m.contains("no such") || m.contains("does not exist")
}

/// The pod's IPv4 address and gateway from an ADD result: the first IPv4 `ips` entry that
/// belongs to a sandbox interface (or has no interface index), inside the pod CIDR.
pub(crate) fn parse_ip(result: &Value, cidr: &Ipv4Cidr) -> Result<(Ipv4Addr, Ipv4Addr)> {
    let bad = |m: String| NetError::Plugin {
        plugin: "bridge".into(),
        command: "ADD".into(),
        message: m,
    };
    let ifaces = result["interfaces"].as_array();
    let in_sandbox = |idx: Option<u64>| match (idx, ifaces) {
        (Some(i), Some(ifs)) => ifs
            .get(i as usize)
            .and_then(|f| f["sandbox"].as_str())
            .is_some_and(|s| !s.is_empty()),
        _ => true,
    };
    let ips = result["ips"]
        .as_array()
        .ok_or_else(|| bad(format!("result has no ips: {result}")))?;
    for entry in ips {
        if !in_sandbox(entry["interface"].as_u64()) {
            continue;
        }
        let Some(addr) = entry["address"].as_str() else {
            continue;
        };
        // CNI results carry `ip/prefix`; the prefix itself is not needed.
        let Ok(ip) = addr
            .parse::<Ipv4Net>()
            .map(|n| n.addr())
            .or_else(|_| addr.parse::<Ipv4Addr>())
        else {
            continue;
        };
        if !cidr.contains(ip) {
            return Err(bad(format!("address {ip} is outside the pod CIDR {cidr}")));
        }
        let gw = entry["gateway"]
            .as_str()
            .and_then(|g| g.parse().ok())
            .unwrap_or_else(|| cidr.first_host());
        return Ok((ip, gw));
    }
    Err(bad(format!("result has no IPv4 address: {result}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_result() {
        let cidr = Ipv4Cidr::parse("100.64.9.0/24").unwrap();
        let r = json!({
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "br"}, {"name": "veth1"}, {"name": "eth0", "sandbox": "/x"}],
            "ips": [{"interface": 2, "address": "100.64.9.7/24", "gateway": "100.64.9.1"}]
        });
        assert_eq!(
            parse_ip(&r, &cidr).unwrap(),
            (Ipv4Addr::new(100, 64, 9, 7), Ipv4Addr::new(100, 64, 9, 1))
        );
        assert!(parse_ip(&json!({"ips": []}), &cidr).is_err());
        let outside = json!({"ips": [{"address": "10.0.0.2/24"}]});
        assert!(parse_ip(&outside, &cidr).is_err());
    }

    #[test]
    fn capabilities_filter_runtime_config() {
        let cidr = Ipv4Cidr::parse("100.64.9.0/24").unwrap();
        let list = default_conflist("n", "skx", &cidr, Path::new("/tmp/ipam"));
        let r = Runner {
            bin_dir: Path::new("/nonexistent"),
            conflist: &list,
        };
        let rc = runtime_config(&[PortMapping {
            host_port: 8080,
            container_port: 80,
            protocol: "TCP".into(),
            host_ip: None,
        }]);
        let plugins = r.plugins();
        let bridge = r.plugin_config(&plugins[0], &rc, None);
        assert!(bridge.get("runtimeConfig").is_none());
        assert_eq!(bridge["name"], "n");
        let pm = r.plugin_config(&plugins[1], &rc, Some(&json!({"ips": []})));
        assert_eq!(pm["runtimeConfig"]["portMappings"][0]["protocol"], "tcp");
        assert!(pm.get("prevResult").is_some());
    }
}
