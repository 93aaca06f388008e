//! The address a step acts on, for the adapters that act on addresses (EDL, nftables).

use std::net::IpAddr;

use ipnet::IpNet;
use parapet_model::{Invalid, Step, intent::clip};

use crate::{Error, Result};

/// Which address a step acts on: the target id for `ip` targets, the `ip` attribute of a
/// host. The field path names where the address came from.
pub fn address(step: &Step) -> Result<IpNet, Invalid> {
    let (field, value) = match step.target.kind.as_str() {
        "ip" => ("target.id", step.target.id.as_str()),
        _ => match step.target.attributes.get("ip") {
            Some(ip) => ("target.attributes.ip", ip.as_str()),
            None => {
                return Err(Invalid::new(
                    "target.attributes.ip",
                    format!(
                        "a `{}` target needs its address in attribute `ip`",
                        step.target.kind
                    ),
                ));
            }
        },
    };
    parse_net(value).map_err(|message| Invalid::new(field, message))
}

/// An address or a CIDR block without host bits.
pub fn parse_net(value: &str) -> Result<IpNet, String> {
    if let Ok(addr) = value.parse::<IpAddr>() {
        return Ok(IpNet::from(addr));
    }
    let net: IpNet = value
        .parse()
        .map_err(|_| format!("`{}` is not an IP address or CIDR block", clip(value)))?;
    if net.trunc() != net {
        return Err(format!(
            "`{net}` has host bits set; the block is `{}`",
            net.trunc()
        ));
    }
    Ok(net)
}

/// An adapter's own floor: a block broader than its minimum prefix is refused whatever the
/// policy allowed.
pub fn within_floor(entry: IpNet, min_v4: u8, min_v6: u8) -> Result<()> {
    let min = match entry {
        IpNet::V4(_) => min_v4,
        IpNet::V6(_) => min_v6,
    };
    if entry.prefix_len() < min {
        return Err(Error::permanent(format!(
            "`{entry}` is broader than /{min}; refusing to act on it"
        )));
    }
    Ok(())
}
