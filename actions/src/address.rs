//! The address a step acts on, for the adapters that act on addresses (EDL, nftables), and an
//! adapter's prefix floor.
//!
//! An adapter declares the fields it acts on as addresses ([`crate::Adapter::addresses`]); the
//! registry refuses a step whose declared field is missing or not an address, and the target
//! holds every address in canonical form ([`parapet_model::Address`]), which is also what the
//! guardrails judge. The adapters here read the address through [`field`], the same function
//! their declaration uses, so what they act on is what was judged.

use ipnet::IpNet;
use parapet_model::{Address, Invalid, Step, intent::Field};

use crate::{Error, Result};

/// Where the address of a step is: the id of an `ip` target, the `ip` attribute of any other.
pub fn field(step: &Step) -> Field {
    if step.target.kind == parapet_model::intent::IP_KIND {
        Field::Id
    } else {
        Field::Attribute(parapet_model::intent::IP_ATTRIBUTE.to_owned())
    }
}

/// Every field of a step that holds its address by convention: the id of an `ip` target, and
/// the `ip` attribute when there is one. For adapters that hand the target on (a script, a
/// request) and so act on whichever their other side reads.
pub fn named(step: &Step) -> Vec<Field> {
    let mut fields = Vec::new();
    if step.target.kind == parapet_model::intent::IP_KIND {
        fields.push(Field::Id);
    }
    let attribute = Field::Attribute(parapet_model::intent::IP_ATTRIBUTE.to_owned());
    if step.target.get(&attribute).is_some() {
        fields.push(attribute);
    }
    fields
}

/// The address a step acts on, read from [`field`].
pub fn address(step: &Step) -> Result<IpNet, Invalid> {
    at(step, &field(step)).map(|a| a.net())
}

/// The address in one field of a step's target; the error names the field.
pub fn at(step: &Step, field: &Field) -> Result<Address, Invalid> {
    let path = field.to_string();
    let Some(value) = step.target.get(field) else {
        return Err(Invalid::new(
            path,
            format!(
                "a `{}` target needs its address in attribute `{}`",
                step.target.kind,
                parapet_model::intent::IP_ATTRIBUTE
            ),
        ));
    };
    Address::parse(value).map_err(|message| Invalid::new(path, message.to_string()))
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
