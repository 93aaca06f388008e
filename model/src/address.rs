//! Addresses in their one canonical form, and the IPv4 networks an IPv6 notation reaches.
//!
//! An address can be written many ways: `::ffff:10.20.0.5` (IPv4-mapped) and `64:ff9b::a14:5`
//! (NAT64) are the IPv4 address `10.20.0.5`; `10.20.0.5/32` is the address itself. Parapet
//! reads an address strictly (dotted quads without leading zeros, no shorthand such as `10/8`,
//! no zone, nothing after it) and writes it back in one form: IPv4-mapped and NAT64 addresses
//! and blocks become IPv4, a single address loses its `/32` or `/128`, IPv6 is compressed and
//! lowercase (RFC 5952). Every check and every adapter sees that form.
//!
//! Some IPv6 notations do not *equal* an IPv4 address but carry one (6to4 `2002::/16`, the
//! deprecated IPv4-compatible `::/96`), and a broad IPv6 block can hold every mapped or NAT64
//! address. [`Address::views`] gives those IPv4 networks too, so that a guardrail judging an
//! IPv6 block also judges the IPv4 space it reaches.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    str::FromStr,
};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::intent::clip;

/// An address or block, canonical. The only way to get one is [`Address::parse`] (or from a
/// network, canonicalised), so holding one means it is in its one form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address(IpNet);

/// The IPv6 ranges that hold IPv4 addresses in their last 32 bits, and are those addresses.
const MAPPED: Ipv6Net = Ipv6Net::new_assert(Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96);
const NAT64: Ipv6Net = Ipv6Net::new_assert(Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96);
/// 6to4: a site's IPv4 address in bits 16..48.
const SIX_TO_FOUR: Ipv6Net = Ipv6Net::new_assert(Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16);
/// IPv4-compatible (deprecated): an IPv4 address in the last 32 bits.
const COMPATIBLE: Ipv6Net = Ipv6Net::new_assert(Ipv6Addr::UNSPECIFIED, 96);

/// Why text is not an [`Address`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// Quoting (a clipped) text.
    #[error("`{0}` is not an IP address or CIDR block")]
    NotAnAddress(String),
    #[error("`{net}` has host bits set; the block is `{}`", net.trunc())]
    HostBits { net: IpNet },
}

impl Address {
    /// Reads an address or a block, strictly, into its canonical form.
    pub fn parse(text: &str) -> Result<Self, AddressError> {
        let net = if let Ok(addr) = text.parse::<IpAddr>() {
            IpNet::from(addr)
        } else {
            let net: IpNet = text
                .parse()
                .map_err(|_| AddressError::NotAnAddress(clip(text).to_owned()))?;
            if net.trunc() != net {
                return Err(AddressError::HostBits { net });
            }
            net
        };
        Ok(Self::from_net(net))
    }

    /// A network in canonical form: a block inside the IPv4-mapped or NAT64 range is the IPv4
    /// block it maps.
    pub fn from_net(net: IpNet) -> Self {
        let net = net.trunc();
        if let IpNet::V6(v6) = net {
            for range in [MAPPED, NAT64] {
                if range.contains(&v6) {
                    let prefix = v6.prefix_len() - 96;
                    let addr = Ipv4Addr::from(low32(v6.addr()));
                    if let Ok(v4) = Ipv4Net::new(addr, prefix) {
                        return Self(IpNet::V4(v4));
                    }
                }
            }
        }
        Self(net)
    }

    pub fn net(&self) -> IpNet {
        self.0
    }

    /// A single address, not a block.
    pub fn is_host(&self) -> bool {
        self.0.prefix_len() == self.0.max_prefix_len()
    }

    /// The networks a guardrail must judge for this address: itself, and the IPv4 networks
    /// it carries or covers (6to4 and IPv4-compatible addresses carry one; an IPv6 block over
    /// the mapped, NAT64, 6to4 or compatible range covers all of IPv4), each with how.
    pub fn views(&self) -> Vec<(IpNet, Option<&'static str>)> {
        let mut out = vec![(self.0, None)];
        let IpNet::V6(v6) = self.0 else {
            return out;
        };
        let everything = IpNet::V4(Ipv4Net::default());
        for (range, how) in [
            (MAPPED, "IPv4-mapped"),
            (NAT64, "NAT64"),
            (SIX_TO_FOUR, "6to4"),
            (COMPATIBLE, "IPv4-compatible"),
        ] {
            if v6.prefix_len() < range.prefix_len() && v6.contains(&range) {
                out.push((everything, Some(how)));
            }
        }
        if SIX_TO_FOUR.contains(&v6) {
            let bits = u128::from(v6.addr());
            let v4 = Ipv4Addr::from(((bits >> 80) & 0xffff_ffff) as u32);
            let prefix = (v6.prefix_len() - 16).min(32);
            if let Ok(net) = Ipv4Net::new(v4, prefix) {
                out.push((IpNet::V4(net.trunc()), Some("6to4")));
            }
        }
        // `::` and `::1` are themselves; the rest of `::/96` carries an IPv4 address
        if COMPATIBLE.contains(&v6) && low32(v6.addr()) > 1 {
            let v4 = Ipv4Addr::from(low32(v6.addr()));
            if let Ok(net) = Ipv4Net::new(v4, v6.prefix_len() - 96) {
                out.push((IpNet::V4(net.trunc()), Some("IPv4-compatible")));
            }
        }
        out.dedup();
        out
    }
}

fn low32(addr: Ipv6Addr) -> u32 {
    (u128::from(addr) & 0xffff_ffff) as u32
}

impl From<IpAddr> for Address {
    fn from(addr: IpAddr) -> Self {
        Self::from_net(IpNet::from(addr))
    }
}

impl FromStr for Address {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, AddressError> {
        Self::parse(s)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_host() {
            self.0.addr().fmt(f)
        } else {
            self.0.fmt(f)
        }
    }
}

/// A special-purpose range: never a sensible target unless a policy says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Special {
    /// The name a policy allows it by.
    pub name: &'static str,
    pub range: IpNet,
    /// What it is, for people.
    pub what: &'static str,
}

/// The ranges refused by default: acting on them cuts a host off from itself, from its
/// cloud's metadata service, or reaches every host of a link at once.
pub fn special() -> [Special; 9] {
    let v4 = |a, b, c, d, p| IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), p));
    let v6 = |a, p| IpNet::V6(Ipv6Net::new_assert(a, p));
    [
        Special {
            name: "unspecified",
            range: v4(0, 0, 0, 0, 8),
            what: "unspecified (\"this network\")",
        },
        Special {
            name: "unspecified",
            range: v6(Ipv6Addr::UNSPECIFIED, 128),
            what: "unspecified",
        },
        Special {
            name: "loopback",
            range: v4(127, 0, 0, 0, 8),
            what: "loopback",
        },
        Special {
            name: "loopback",
            range: v6(Ipv6Addr::LOCALHOST, 128),
            what: "loopback",
        },
        Special {
            name: "link_local",
            range: v4(169, 254, 0, 0, 16),
            what: "link-local (cloud metadata services live here)",
        },
        Special {
            name: "link_local",
            range: v6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10),
            what: "link-local",
        },
        Special {
            name: "multicast",
            range: v4(224, 0, 0, 0, 4),
            what: "multicast",
        },
        Special {
            name: "multicast",
            range: v6(Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8),
            what: "multicast",
        },
        Special {
            name: "broadcast",
            range: v4(255, 255, 255, 255, 32),
            what: "broadcast",
        },
    ]
}

/// The names of the special-purpose ranges, for messages and policy checks.
pub const SPECIAL_NAMES: [&str; 5] = [
    "unspecified",
    "loopback",
    "link_local",
    "multicast",
    "broadcast",
];

/// Whether two networks share any address.
pub fn overlap(a: &IpNet, b: &IpNet) -> bool {
    a.contains(b) || b.contains(a)
}

#[cfg(test)]
mod tests;
