//! Private network namespaces for the nftables tests: a "gateway" namespace where Parapet's
//! table lives, and a "peer" host joined to it by a veth pair, so a test can see packets
//! really dropped and flowing again. Everything is deleted when the value is dropped.
//!
//! Addresses are the tests' own, inside these namespaces only:
//! gateway `10.77.0.1/24` and management `10.77.1.1/24`; peer `10.77.0.2/24`.

use std::{
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
};

use serde_json::Value;

pub const GATEWAY: &str = "10.77.0.1";
pub const GATEWAY_MGMT: &str = "10.77.1.1";
pub const MANAGEMENT: &str = "10.77.1.0/24";
pub const PEER: &str = "10.77.0.2";

static NEXT: AtomicU32 = AtomicU32::new(0);

fn run(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{}`: {e}", args.join(" ")))
}

fn must(args: &[&str]) {
    let out = run(args);
    assert!(
        out.status.success(),
        "`{}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    fn create(role: &str) -> Self {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("parapet-{role}-{}-{n}", std::process::id());
        must(&["ip", "netns", "add", &name]);
        let ns = Self { name };
        ns.must(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// Runs a command inside the namespace.
    pub fn exec(&self, args: &[&str]) -> Output {
        let mut all = vec!["ip", "netns", "exec", self.name.as_str()];
        all.extend_from_slice(args);
        run(&all)
    }

    fn must(&self, args: &[&str]) {
        let out = self.exec(args);
        assert!(
            out.status.success(),
            "`{}` in {} failed: {}",
            args.join(" "),
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `nft -j ARGS` inside the namespace, parsed.
    pub fn nft_json(&self, args: &[&str]) -> Value {
        let mut all = vec!["nft", "-j"];
        all.extend_from_slice(args);
        let out = self.exec(&all);
        assert!(
            out.status.success(),
            "nft {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The elements of one of Parapet's sets, as nft lists them.
    pub fn elements(&self, table: &str, set: &str) -> Vec<Value> {
        let doc = self.nft_json(&["list", "set", "inet", table, set]);
        doc["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|o| o["set"]["elem"].as_array())
            .flatten()
            .cloned()
            .collect()
    }

    /// The tables in the namespace, by name.
    pub fn tables(&self) -> Vec<String> {
        let doc = self.nft_json(&["list", "tables"]);
        doc["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|o| o["table"]["name"].as_str().map(str::to_owned))
            .collect()
    }

    /// Whether one ping from this namespace to `addr` is answered.
    pub fn pings(&self, addr: &str) -> bool {
        self.exec(&["ping", "-c", "1", "-W", "1", "-q", addr])
            .status
            .success()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run(&["ip", "netns", "del", &self.name]);
    }
}

/// A gateway and a peer joined by a veth pair.
pub struct Link {
    pub gateway: Netns,
    pub peer: Netns,
}

/// Why nftables tests cannot run here, if they cannot: only a kernel without nftables is a
/// reason to skip; anything else (not root, no `ip` or `nft`) is a failure to fix.
pub fn nftables_missing() -> Option<String> {
    let probe = Netns::create("probe");
    let out = probe.exec(&["nft", "list", "tables"]);
    if out.status.success() {
        return None;
    }
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    if stderr.contains("Operation not supported") || stderr.contains("Protocol not supported") {
        return Some(stderr);
    }
    panic!("nft does not run in a network namespace: {stderr}");
}

impl Link {
    pub fn create() -> Self {
        let gateway = Netns::create("gw");
        let peer = Netns::create("peer");
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let (a, b) = (
            format!("pg{}{n}", std::process::id() % 100_000),
            format!("pp{}{n}", std::process::id() % 100_000),
        );
        must(&[
            "ip",
            "link",
            "add",
            &a,
            "netns",
            &gateway.name,
            "type",
            "veth",
            "peer",
            "name",
            &b,
            "netns",
            &peer.name,
        ]);
        gateway.must(&["ip", "addr", "add", &format!("{GATEWAY}/24"), "dev", &a]);
        gateway.must(&[
            "ip",
            "addr",
            "add",
            &format!("{GATEWAY_MGMT}/24"),
            "dev",
            &a,
        ]);
        gateway.must(&["ip", "link", "set", &a, "up"]);
        peer.must(&["ip", "addr", "add", &format!("{PEER}/24"), "dev", &b]);
        peer.must(&["ip", "link", "set", &b, "up"]);
        peer.must(&["ip", "route", "add", MANAGEMENT, "dev", &b]);
        Self { gateway, peer }
    }
}

/// A namespace joined to this (the test's own) namespace by a veth pair on a /30 of its own:
/// a program inside reaches a server the test runs here at [`HostLink::host`].
pub struct HostLink {
    pub ns: Netns,
    /// This namespace's end.
    pub host: String,
    veth: String,
}

impl HostLink {
    pub fn create(role: &str) -> Self {
        let ns = Netns::create(role);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        // 10.79.X.0/30 per link: X from the process and the link, so parallel tests differ
        let x = (std::process::id() as usize * 7 + n as usize) % 250 + 1;
        let (host, inside) = (format!("10.79.{x}.1"), format!("10.79.{x}.2"));
        let (a, b) = (
            format!("ph{}{n}", std::process::id() % 100_000),
            format!("pn{}{n}", std::process::id() % 100_000),
        );
        must(&[
            "ip", "link", "add", &a, "type", "veth", "peer", "name", &b, "netns", &ns.name,
        ]);
        must(&["ip", "addr", "add", &format!("{host}/30"), "dev", &a]);
        must(&["ip", "link", "set", &a, "up"]);
        ns.must(&["ip", "addr", "add", &format!("{inside}/30"), "dev", &b]);
        ns.must(&["ip", "link", "set", &b, "up"]);
        Self { ns, host, veth: a }
    }
}

impl Drop for HostLink {
    fn drop(&mut self) {
        // deleting the namespace takes its end; this one goes with it, or here
        let _ = run(&["ip", "link", "del", &self.veth]);
    }
}
