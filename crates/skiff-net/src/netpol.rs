//! NetworkPolicy enforcement: one `ip` nftables table per data dir (`skiff_np_<8hex>`, the same
//! hash as the proxy's table and the bridge), rewritten atomically with `nft -f -` from a model the
//! agent resolved from the API (selectors, named ports and namespaces are already turned into
//! addresses and port numbers here).
//!
//! Layout: a `forward` base chain (filter priority, after the proxy's DNAT in prerouting, so
//! Service traffic is judged by pod IP and target port) accepts established/related packets, then
//! sends packets from pods in `@egress-isolated` through `egress` and packets to pods in
//! `@ingress-isolated` through `ingress`. Each policy rule is one nft rule over its own sets
//! (selected pods, peer address intervals, destination . protocol . port intervals), so many
//! policies cost a few set lookups on the first packet of a connection only. Each chain ends in
//! `drop`. Traffic from and to the node itself (probes, DNS, the API relay) does not cross
//! `forward` and stays allowed. Bridged pod-to-pod traffic reaches `forward` through
//! `br_netfilter` (`bridge-nf-call-iptables`), which [`NetpolTable::apply`] makes sure is on.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;

use sha2::Digest;

use crate::proxy::{nft_apply, Protocol};
use crate::{NetError, Result};

/// An inclusive IPv4 address range (a CIDR, or a CIDR minus its `except` blocks, one piece).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IpRange {
    pub first: Ipv4Addr,
    pub last: Ipv4Addr,
}

impl IpRange {
    pub const ANY: IpRange = IpRange {
        first: Ipv4Addr::UNSPECIFIED,
        last: Ipv4Addr::BROADCAST,
    };

    pub fn single(ip: Ipv4Addr) -> Self {
        IpRange {
            first: ip,
            last: ip,
        }
    }

    fn nft(&self) -> String {
        if self.first == self.last {
            self.first.to_string()
        } else {
            format!("{}-{}", self.first, self.last)
        }
    }
}

/// `cidr` minus every `except` block (each must lie inside it; others are ignored), as ranges.
pub fn cidr_except(cidr: &str, except: &[String]) -> Option<Vec<IpRange>> {
    let (first, last) = cidr_bounds(cidr)?;
    let mut pieces = vec![(first, last)];
    for e in except {
        let Some((ef, el)) = cidr_bounds(e) else {
            continue;
        };
        let mut next = Vec::with_capacity(pieces.len() + 1);
        for (f, l) in pieces {
            if el < f || ef > l {
                next.push((f, l));
                continue;
            }
            if ef > f {
                next.push((f, ef - 1));
            }
            if el < l {
                next.push((el + 1, l));
            }
        }
        pieces = next;
    }
    Some(
        pieces
            .into_iter()
            .map(|(f, l)| IpRange {
                first: Ipv4Addr::from(f),
                last: Ipv4Addr::from(l),
            })
            .collect(),
    )
}

fn cidr_bounds(cidr: &str) -> Option<(u32, u32)> {
    let (ip, len) = cidr.split_once('/')?;
    let ip: Ipv4Addr = ip.parse().ok()?;
    let len: u32 = len.parse().ok()?;
    if len > 32 {
        return None;
    }
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    let first = u32::from(ip) & mask;
    Some((first, first | !mask))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    Ingress,
    Egress,
}

/// One allowed destination: address range . protocol . port range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortEntry {
    pub dst: IpRange,
    pub protocol: Protocol,
    pub first_port: u16,
    pub last_port: u16,
}

/// One rule of one policy, resolved: traffic between `pods` (selected pods on this node) and
/// `peers` is allowed, restricted to `ports` (keyed by destination) unless None.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleModel {
    pub direction: Direction,
    /// `namespace/name#index`, for comments and set names.
    pub name: String,
    pub pods: Vec<Ipv4Addr>,
    pub peers: Vec<IpRange>,
    pub ports: Option<Vec<PortEntry>>,
}

/// Everything this node enforces.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetpolModel {
    /// Local pods selected by a policy of type Ingress.
    pub ingress_isolated: Vec<Ipv4Addr>,
    /// Local pods selected by a policy of type Egress.
    pub egress_isolated: Vec<Ipv4Addr>,
    pub rules: Vec<RuleModel>,
}

/// `skiff_np_<8hex>` from the canonical data dir (same hash as the proxy's `skiff_<8hex>`).
pub fn table_name(data_dir: &Path) -> String {
    let dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    let hash = hex::encode(sha2::Sha256::digest(dir.as_os_str().as_encoded_bytes()));
    format!("skiff_np_{}", &hash[..8])
}

fn elements<T: std::fmt::Display>(items: impl Iterator<Item = T>) -> String {
    let v: Vec<String> = items.map(|i| i.to_string()).collect();
    if v.is_empty() {
        String::new()
    } else {
        format!(" elements = {{ {} }};", v.join(", "))
    }
}

fn sorted_ranges(v: impl Iterator<Item = IpRange>) -> Vec<IpRange> {
    let mut v: Vec<IpRange> = v.collect();
    v.sort();
    v.dedup();
    v
}

/// Renders the whole table as one `nft -f` script (create-if-missing, delete, recreate: one
/// atomic transaction).
pub fn render(table: &str, model: &NetpolModel) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "table ip {table} {{}}");
    let _ = writeln!(s, "delete table ip {table}");
    let _ = writeln!(s, "table ip {table} {{");
    for (name, ips) in [
        ("ingress-isolated", &model.ingress_isolated),
        ("egress-isolated", &model.egress_isolated),
    ] {
        let mut ips = ips.clone();
        ips.sort();
        ips.dedup();
        let _ = writeln!(
            s,
            "  set {name} {{ type ipv4_addr;{} }}",
            elements(ips.iter())
        );
    }
    let mut chains = [String::new(), String::new()];
    for (i, r) in model.rules.iter().enumerate() {
        if r.pods.is_empty() || r.peers.is_empty() {
            continue;
        }
        let ports = match &r.ports {
            Some(p) if p.is_empty() => continue,
            other => other,
        };
        let (own, other, chain) = match r.direction {
            Direction::Ingress => ("daddr", "saddr", 0),
            Direction::Egress => ("saddr", "daddr", 1),
        };
        let pods = sorted_ranges(r.pods.iter().copied().map(IpRange::single));
        let _ = writeln!(
            s,
            "  set r{i}-pods {{ type ipv4_addr; flags interval; auto-merge;{} }}",
            elements(pods.iter().map(IpRange::nft))
        );
        let peers = sorted_ranges(r.peers.iter().copied());
        let _ = writeln!(
            s,
            "  set r{i}-peers {{ type ipv4_addr; flags interval; auto-merge;{} }}",
            elements(peers.iter().map(IpRange::nft))
        );
        let base = format!("ip {own} @r{i}-pods ip {other} @r{i}-peers");
        let comment: String = r
            .name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '#' | '-' | '.'))
            .take(120)
            .collect();
        let Some(ports) = ports else {
            let _ = writeln!(chains[chain], "    {base} return comment \"{comment}\"");
            continue;
        };
        // One set of destinations per (protocol, port range): interval sets merge overlapping
        // address ranges, concatenated ones would refuse them.
        let mut groups: std::collections::BTreeMap<(Protocol, u16, u16), Vec<IpRange>> =
            std::collections::BTreeMap::new();
        for p in ports {
            groups
                .entry((p.protocol, p.first_port, p.last_port))
                .or_default()
                .push(p.dst);
        }
        for (j, ((proto, first, last), dsts)) in groups.into_iter().enumerate() {
            let dsts = sorted_ranges(dsts.into_iter());
            let _ = writeln!(
                s,
                "  set r{i}-p{j} {{ type ipv4_addr; flags interval; auto-merge;{} }}",
                elements(dsts.iter().map(IpRange::nft))
            );
            let range = if first == last {
                first.to_string()
            } else {
                format!("{first}-{last}")
            };
            let _ = writeln!(
                chains[chain],
                "    {base} ip daddr @r{i}-p{j} meta l4proto {} th dport {range} return comment \"{comment}\"",
                proto.nft()
            );
        }
    }
    let _ = writeln!(s, "  chain forward {{");
    let _ = writeln!(
        s,
        "    type filter hook forward priority filter; policy accept;"
    );
    let _ = writeln!(s, "    ct state established,related accept");
    let _ = writeln!(s, "    ip saddr @egress-isolated jump egress");
    let _ = writeln!(s, "    ip daddr @ingress-isolated jump ingress");
    let _ = writeln!(s, "  }}");
    for (name, body) in [("ingress", &chains[0]), ("egress", &chains[1])] {
        let _ = writeln!(s, "  chain {name} {{");
        s.push_str(body);
        let _ = writeln!(s, "    counter drop");
        let _ = writeln!(s, "  }}");
    }
    let _ = writeln!(s, "}}");
    s
}

/// The node's policy table. Not thread-safe by itself: the agent serializes `apply` calls.
pub struct NetpolTable {
    table: String,
    last: Option<String>,
}

impl NetpolTable {
    pub fn new(data_dir: &Path) -> Self {
        NetpolTable {
            table: table_name(data_dir),
            last: None,
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Writes the model (skipped when the script is unchanged). Ok(true) if it wrote.
    pub fn apply(&mut self, model: &NetpolModel) -> Result<bool> {
        let script = render(&self.table, model);
        if self.last.as_deref() == Some(script.as_str()) {
            return Ok(false);
        }
        ensure_bridge_netfilter();
        nft_apply(&script)?;
        self.last = Some(script);
        Ok(true)
    }

    /// Deletes the table (agent shutdown).
    pub fn remove(self) -> Result<()> {
        remove_table_named(&self.table)
    }
}

/// Deletes the policy table of `data_dir` (for `skiff reset`); Ok if it does not exist.
pub fn remove_table(data_dir: &Path) -> Result<()> {
    remove_table_named(&table_name(data_dir))
}

fn remove_table_named(table: &str) -> Result<()> {
    let out = std::process::Command::new("nft")
        .args(["delete", "table", "ip", table])
        .output()
        .map_err(crate::io_err("run nft delete table"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() || stderr.contains("No such file") {
        Ok(())
    } else {
        Err(NetError::Other(format!(
            "nft delete table ip {table}: {}",
            stderr.trim()
        )))
    }
}

/// Bridged (same-node) pod-to-pod packets only reach the `ip` forward hook with br_netfilter and
/// `bridge-nf-call-iptables=1`, as every bridge-based Kubernetes network needs. Best effort: a
/// failure is logged and policies then apply to routed traffic only.
fn ensure_bridge_netfilter() {
    const KNOB: &str = "/proc/sys/net/bridge/bridge-nf-call-iptables";
    if std::fs::read_to_string(KNOB).is_err() {
        let _ = std::process::Command::new("modprobe")
            .arg("br_netfilter")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
    match std::fs::read_to_string(KNOB) {
        Ok(v) if v.trim() == "1" => {}
        Ok(_) => {
            if let Err(e) = std::fs::write(KNOB, "1") {
                tracing::warn!("cannot enable {KNOB}: {e}; same-node policies not enforced");
            }
        }
        Err(e) => tracing::warn!("br_netfilter unavailable ({e}); same-node policies not enforced"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn except_splits_the_block() {
        let r = cidr_except(
            "10.0.0.0/24",
            &["10.0.0.128/25".into(), "10.0.0.8/30".into()],
        )
        .unwrap();
        assert_eq!(
            r,
            vec![
                IpRange {
                    first: ip("10.0.0.0"),
                    last: ip("10.0.0.7")
                },
                IpRange {
                    first: ip("10.0.0.12"),
                    last: ip("10.0.0.127")
                },
            ]
        );
        assert_eq!(cidr_except("0.0.0.0/0", &[]).unwrap(), vec![IpRange::ANY]);
        assert!(cidr_except("nope", &[]).is_none());
    }

    #[test]
    fn renders_sets_and_rules() {
        let model = NetpolModel {
            ingress_isolated: vec![ip("100.64.0.5")],
            egress_isolated: vec![],
            rules: vec![RuleModel {
                direction: Direction::Ingress,
                name: "ns/allow\"web#0".into(),
                pods: vec![ip("100.64.0.5")],
                peers: vec![IpRange::ANY],
                ports: Some(vec![PortEntry {
                    dst: IpRange::single(ip("100.64.0.5")),
                    protocol: Protocol::Tcp,
                    first_port: 8080,
                    last_port: 8080,
                }]),
            }],
        };
        let s = render("skiff_np_x", &model);
        assert!(s.contains("set ingress-isolated { type ipv4_addr; elements = { 100.64.0.5 }; }"));
        assert!(s.contains(
            "set r0-p0 { type ipv4_addr; flags interval; auto-merge; elements = { 100.64.0.5 }; }"
        ));
        assert!(s.contains(
            "ip daddr @r0-pods ip saddr @r0-peers ip daddr @r0-p0 meta l4proto tcp th dport 8080 return comment \"ns/allowweb#0\""
        ));
        assert!(s.contains("elements = { 0.0.0.0-255.255.255.255 }"));
    }
}
