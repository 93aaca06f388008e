use std::net::Ipv4Addr;

use proptest::prelude::*;

use super::*;

fn canonical(text: &str) -> String {
    Address::parse(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .to_string()
}

#[test]
fn every_notation_of_an_address_is_written_one_way() {
    for (text, want) in [
        ("10.20.0.5", "10.20.0.5"),
        ("10.20.0.5/32", "10.20.0.5"),
        ("10.20.0.0/16", "10.20.0.0/16"),
        ("::ffff:10.20.0.5", "10.20.0.5"),
        ("::FFFF:a14:5", "10.20.0.5"),
        ("::ffff:10.20.0.0/112", "10.20.0.0/16"),
        ("::ffff:0:0/96", "0.0.0.0/0"),
        ("64:ff9b::10.20.0.5", "10.20.0.5"),
        ("64:ff9b::a14:0/120", "10.20.0.0/24"),
        ("64:ff9b::/96", "0.0.0.0/0"),
        ("2001:DB8:0:0::1", "2001:db8::1"),
        ("2001:db8::1/128", "2001:db8::1"),
        ("2001:db8::/32", "2001:db8::/32"),
    ] {
        assert_eq!(canonical(text), want, "{text}");
    }
}

#[test]
fn anything_but_a_plain_address_or_block_is_refused() {
    for text in [
        "10/8",
        "0/0",
        "012.024.0.5",
        "10.20.0.5;x",
        " 10.20.0.5",
        "10.20.0.5 ",
        "10.20.0.5/16",
        "1.2.3.4/33",
        "fe80::1%eth0",
        "0x0a.0x14.0.5",
        "167772165",
        "10.20.5",
        "[::1]",
        "",
    ] {
        assert!(Address::parse(text).is_err(), "{text} was taken");
    }
    let err = Address::parse("10.20.0.5/16").unwrap_err().to_string();
    assert!(err.contains("the block is `10.20.0.0/16`"), "{err}");
}

fn views(text: &str) -> Vec<String> {
    Address::parse(text)
        .unwrap()
        .views()
        .into_iter()
        .map(|(net, _)| net.to_string())
        .collect()
}

#[test]
fn an_ipv6_notation_carrying_or_covering_ipv4_shows_that_ipv4() {
    assert_eq!(
        views("2002:a14:5::/48"),
        ["2002:a14:5::/48", "10.20.0.5/32"]
    );
    assert_eq!(views("2002:a14::/32"), ["2002:a14::/32", "10.20.0.0/16"]);
    assert_eq!(views("2002::/16"), ["2002::/16", "0.0.0.0/0"]);
    assert_eq!(views("::a14:5"), ["::a14:5/128", "10.20.0.5/32"]);
    assert!(views("64:ff9b::/64").contains(&"0.0.0.0/0".to_owned()));
    assert!(views("::/0").contains(&"0.0.0.0/0".to_owned()));
    assert_eq!(views("2001:db8::1"), ["2001:db8::1/128"]);
    assert_eq!(views("::1"), ["::1/128"]);
}

#[test]
fn the_special_ranges_cover_what_they_say() {
    let hit = |text: &str| {
        let a = Address::parse(text).unwrap().net();
        special()
            .iter()
            .find(|s| overlap(&s.range, &a))
            .map(|s| s.name)
    };
    assert_eq!(hit("169.254.169.254"), Some("link_local"));
    assert_eq!(hit("::ffff:127.0.0.1"), Some("loopback"));
    assert_eq!(hit("0.0.0.0"), Some("unspecified"));
    assert_eq!(hit("::"), Some("unspecified"));
    assert_eq!(hit("255.255.255.255"), Some("broadcast"));
    assert_eq!(hit("ff02::1"), Some("multicast"));
    assert_eq!(hit("198.51.100.7"), None);
}

proptest! {
    /// The mapped and NAT64 forms of any IPv4 address or block are that address or block.
    #[test]
    fn mapped_and_nat64_forms_are_the_ipv4_form(bits in any::<u32>(), prefix in 0u8..=32) {
        let v4 = Ipv4Net::new(Ipv4Addr::from(bits), prefix).unwrap().trunc();
        let plain = Address::parse(&v4.to_string()).unwrap();
        for range in ["::ffff:", "64:ff9b::"] {
            let text = format!("{range}{}/{}", v4.addr(), u16::from(prefix) + 96);
            prop_assert_eq!(Address::parse(&text).unwrap(), plain, "{}", text);
        }
        // written back, it reads as itself
        prop_assert_eq!(Address::parse(&plain.to_string()).unwrap(), plain);
    }
}
