//! Talking to `nft`: the program, optionally inside a network namespace, fed on stdin, never
//! through a shell; Parapet's ruleset; and reading a set's elements back.

use std::{collections::BTreeMap, net::IpAddr, path::PathBuf, process::Stdio, time::Duration};

use ipnet::IpNet;
use serde_json::Value;
use tokio::{io::AsyncWriteExt, process::Command};

use crate::{Error, Result};

/// How to run `nft`.
#[derive(Debug, Clone)]
pub(super) struct Nft {
    pub program: PathBuf,
    /// Run inside this network namespace (`ip netns exec NAME nft ...`).
    pub netns: Option<String>,
    pub timeout: Duration,
}

impl Nft {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns.as_str()]).arg(&self.program);
                c
            }
            None => Command::new(&self.program),
        };
        command
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    /// Runs `nft ARGS` with `input` on stdin; its stdout on success.
    pub async fn run(&self, args: &[&str], input: &[u8]) -> Result<Vec<u8>> {
        let call = async {
            let mut child = self.command(args).spawn().map_err(|e| {
                Error::permanent(format!("cannot run `{}`: {e}", self.program.display()))
            })?;
            if let Some(mut stdin) = child.stdin.take() {
                stdin
                    .write_all(input)
                    .await
                    .map_err(|e| Error::transient(format!("cannot write to nft: {e}")))?;
            }
            let out = child
                .wait_with_output()
                .await
                .map_err(|e| Error::transient(format!("nft did not finish: {e}")))?;
            if out.status.success() {
                return Ok(out.stdout);
            }
            let stderr = String::from_utf8_lossy(&out.stderr);
            let first = stderr
                .lines()
                .find(|l| l.contains("Error"))
                .or_else(|| stderr.lines().next())
                .unwrap_or("no message");
            Err(Error::permanent(format!(
                "nft failed ({}): {}",
                out.status,
                first.trim()
            )))
        };
        tokio::time::timeout(self.timeout, call)
            .await
            .unwrap_or_else(|_| {
                Err(Error::transient(format!(
                    "nft did not answer within {:?}",
                    self.timeout
                )))
            })
    }

    /// Applies a script in nft's own syntax as one transaction: all of it or none.
    pub async fn script(&self, text: &str) -> Result<()> {
        self.run(&["-f", "-"], text.as_bytes()).await.map(drop)
    }

    /// Whether the kernel would take `text`, without applying it (`nft -c`).
    pub async fn check(&self, text: &str) -> Result<()> {
        self.run(&["-c", "-f", "-"], text.as_bytes())
            .await
            .map(drop)
    }

    /// The elements of one set, with the seconds each has left (`None`: no timeout).
    pub async fn elements(&self, table: &str, set: &str) -> Result<BTreeMap<IpNet, Option<u64>>> {
        let out = self
            .run(&["-j", "list", "set", "inet", table, set], b"")
            .await?;
        let doc: Value = serde_json::from_slice(&out)
            .map_err(|e| Error::permanent(format!("nft listed unreadable JSON: {e}")))?;
        let mut elements = BTreeMap::new();
        let items = doc["nftables"].as_array().into_iter().flatten();
        for elem in items.filter_map(|o| o["set"]["elem"].as_array()).flatten() {
            let (val, expires) = match elem.get("elem") {
                Some(e) => (&e["val"], e["expires"].as_u64()),
                None => (elem, None),
            };
            if let Some(net) = parse_value(val) {
                elements.insert(net, expires);
            }
        }
        Ok(elements)
    }
}

/// `"1.2.3.4"` or `{"prefix": {"addr": "10.0.0.0", "len": 8}}`, as nft lists them.
fn parse_value(val: &Value) -> Option<IpNet> {
    if let Some(s) = val.as_str() {
        return s.parse::<IpAddr>().ok().map(IpNet::from);
    }
    let prefix = &val["prefix"];
    let addr: IpAddr = prefix["addr"].as_str()?.parse().ok()?;
    IpNet::new(addr, u8::try_from(prefix["len"].as_u64()?).ok()?).ok()
}

/// The set an address goes into for a purpose (`block`, `isolate`), by family.
/// Single addresses and blocks go to separate sets: an address inside a blocked range is then
/// no conflict (interval sets refuse overlaps), and the sets of single addresses are plain
/// hashes, cheaper to commit than intervals.
pub(super) fn set_name(purpose: &str, net: &IpNet) -> String {
    let family = match net {
        IpNet::V4(_) => "4",
        IpNet::V6(_) => "6",
    };
    let kind = if net.prefix_len() == net.max_prefix_len() {
        ""
    } else {
        "net"
    };
    format!("{purpose}{family}{kind}")
}

/// Parapet's table, in nft's syntax. Applying it again is harmless: the table, sets and chains
/// are added if missing (their elements kept), the chains' rules and the management set are
/// replaced. Nothing outside the table is touched.
///
/// Each chain drops traffic from and to blocked addresses, and from and to isolated hosts
/// except with the management networks. Its `accept` only ends Parapet's own chain: other
/// tables still judge the packet, so Parapet never opens what someone else closed.
pub(super) fn ruleset(table: &str, management: &[IpNet]) -> String {
    let mut s = format!("add table inet {table}\n");
    for purpose in ["block", "isolate"] {
        for (family, kind) in [("4", "ipv4_addr"), ("6", "ipv6_addr")] {
            s += &format!(
                "add set inet {table} {purpose}{family} {{ type {kind}; flags timeout; }}\n"
            );
            s += &format!(
                "add set inet {table} {purpose}{family}net {{ type {kind}; flags interval, timeout; }}\n"
            );
        }
    }
    for (family, kind) in [("4", "ipv4_addr"), ("6", "ipv6_addr")] {
        s += &format!("add set inet {table} mgmt{family} {{ type {kind}; flags interval; }}\n");
        s += &format!("flush set inet {table} mgmt{family}\n");
        let nets: Vec<String> = management
            .iter()
            .filter(|n| matches!((family, n), ("4", IpNet::V4(_)) | ("6", IpNet::V6(_))))
            .map(IpNet::to_string)
            .collect();
        if !nets.is_empty() {
            s += &format!(
                "add element inet {table} mgmt{family} {{ {} }}\n",
                nets.join(", ")
            );
        }
    }
    for hook in ["input", "forward", "output"] {
        s += &format!(
            "add chain inet {table} {hook} {{ type filter hook {hook} priority -10; policy accept; }}\n"
        );
        s += &format!("flush chain inet {table} {hook}\n");
        // Blocks first, then the isolated hosts' way to management, then their drop, so no
        // accept of Parapet's lets a blocked address through.
        let mut rules = Vec::new();
        for (ip, family) in [("ip", "4"), ("ip6", "6")] {
            for sets in ["", "net"] {
                let block = format!("@block{family}{sets}");
                rules.push((0, format!("{ip} saddr {block} drop")));
                rules.push((0, format!("{ip} daddr {block} drop")));
                let (isolate, mgmt) = (format!("@isolate{family}{sets}"), format!("@mgmt{family}"));
                rules.push((1, format!("{ip} saddr {isolate} {ip} daddr {mgmt} accept")));
                rules.push((1, format!("{ip} daddr {isolate} {ip} saddr {mgmt} accept")));
                rules.push((2, format!("{ip} saddr {isolate} drop")));
                rules.push((2, format!("{ip} daddr {isolate} drop")));
            }
        }
        rules.sort_by_key(|(group, _)| *group);
        for (_, rule) in rules {
            s += &format!("add rule inet {table} {hook} {rule}\n");
        }
    }
    s
}
