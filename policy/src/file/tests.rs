use super::*;

fn err(text: &str) -> PolicyError {
    Policy::from_toml(text).unwrap_err()
}

#[test]
fn the_example_policy_loads() {
    let policy = Policy::from_toml(crate::EXAMPLE_POLICY).unwrap();
    assert_eq!(policy.detections.len(), 3);
    assert_eq!(policy.unknown_detection, UnknownDetection::Approval);
    let c2 = &policy.detections["edr.c2_beacon"];
    assert_eq!(c2.actions[&"block_ip".parse().unwrap()], Tier::Auto);
    assert_eq!(c2.attack, ["T1071.001", "T1573"]);
    assert!(policy.digest().starts_with("sha256:"));
    assert_eq!(policy.digest().len(), "sha256:".len() + 64);
}

#[test]
fn the_digest_follows_the_bytes() {
    let a = Policy::from_toml("").unwrap();
    let b = Policy::from_toml("# a comment\n").unwrap();
    assert_ne!(a.digest(), b.digest());
    // sha256 of the empty string, as `sha256sum` prints it
    assert_eq!(
        a.digest(),
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}

#[test]
fn unknown_keys_are_errors_with_their_line() {
    let e = err("[defaults]\nunknown_detection = \"deny\"\nmin_prefx_v4 = 8\n");
    assert_eq!(e.location.map(|l| l.line), Some(3));
    assert!(e.message.contains("min_prefx_v4"), "{e}");
}

#[test]
fn unknown_detections_can_never_be_auto() {
    let e = err("[defaults]\nunknown_detection = \"auto\"\n");
    assert_eq!(e.location.map(|l| l.line), Some(2));
}

#[test]
fn bad_tiers_and_confidence_point_at_the_entry() {
    let text = "[[detections]]\nid = \"a\"\n[detections.actions]\nblock_ip = \"sometimes\"\n";
    assert_eq!(err(text).location.map(|l| l.line), Some(4));
    let text = "[[detections]]\nid = \"a\"\nmin_confidence = 1.5\n";
    let e = err(text);
    assert_eq!(e.location.map(|l| l.line), Some(3));
    assert!(e.message.contains("outside 0..1"), "{e}");
}

#[test]
fn duplicate_detections_point_at_the_second() {
    let text = "[[detections]]\nid = \"a\"\n\n[[detections]]\nid = \"a\"\n";
    let e = err(text);
    assert_eq!(e.location, Some(Location { line: 5, column: 6 }));
    assert_eq!(e.message, "detection `a` is listed twice");
}

#[test]
fn attack_ids_and_prefixes_are_checked() {
    let e = err("[[detections]]\nid = \"a\"\nattack = [\"T1071\", \"lateral\"]\n");
    assert!(e.message.contains("`lateral`"), "{e}");
    assert_eq!(
        err("[defaults]\nmin_prefix_v4 = 33\n")
            .location
            .map(|l| l.line),
        Some(2)
    );
    assert!(Policy::from_toml("[defaults]\nmin_prefix_v6 = 128\n").is_ok());
}

#[test]
fn invalid_action_kind_names_are_refused() {
    let e = err("[[detections]]\nid = \"a\"\n[detections.actions]\nBlock-IP = \"auto\"\n");
    assert_eq!(e.location.map(|l| l.line), Some(4));
}

#[test]
fn grants_without_an_adapter_point_at_the_grant() {
    let text = "[[detections]]\nid = \"a\"\n[detections.actions]\nblock_ip = \"auto\"\nwipe_disk = \"approval\"\n";
    let policy = Policy::from_toml(text).unwrap();
    let e = policy
        .check_adapters(|k, _| match k.as_str() {
            "block_ip" => Ok(()),
            _ => Err("no adapter performs it".to_owned()),
        })
        .unwrap_err();
    assert_eq!(e.location.map(|l| l.line), Some(5));
    assert!(e.message.contains("`wipe_disk`"), "{e}");
    assert!(policy.check_adapters(|_, _| Ok::<(), String>(())).is_ok());
}

#[test]
fn routes_name_one_adapter_or_several_and_a_bad_route_points_at_its_line() {
    let text = "[routes]\nblock_ip = [\"gw-east\", \"gw-west\"]\nrevoke_credentials = \"ldap\"\n";
    let policy = Policy::from_toml(text).unwrap();
    let kind = |k: &str| k.parse().unwrap();
    assert_eq!(
        policy.route(&kind("block_ip")).unwrap(),
        ["gw-east".to_owned(), "gw-west".to_owned()]
    );
    assert_eq!(
        policy.route(&kind("revoke_credentials")).unwrap(),
        ["ldap".to_owned()]
    );
    assert_eq!(policy.route(&kind("isolate_host")), None);
    let e = policy
        .check_adapters(|k, route| match (k.as_str(), route) {
            ("revoke_credentials", Some(_)) => Err("adapter `ldap` is not configured".to_owned()),
            _ => Ok(()),
        })
        .unwrap_err();
    assert_eq!(e.location.map(|l| l.line), Some(3));
    assert_eq!(e.message, "adapter `ldap` is not configured");
}

#[test]
fn guardrail_settings_are_checked_where_they_are_written() {
    let e = err("[[budgets]]\nname = \"b\"\nmax_per_window = 5\n");
    assert_eq!(e.location.map(|l| l.line), Some(1));
    assert_eq!(
        e.message,
        "budget `b` sets `max_per_window` without `window`"
    );
    let e = err("[[budgets]]\nname = \"b\"\nmax_per_window = 5\nwindow = \"soon\"\n");
    assert_eq!(e.location.map(|l| l.line), Some(4));
    assert!(e.message.contains("`soon` is not a duration"), "{e}");
    let e = err("[[budgets]]\nname = \"b\"\nmax_active_percent = 150\n");
    assert!(e.message.contains("(0, 100]"), "{e}");
    let e = err(
        "[[budgets]]\nname = \"b\"\nmax_active = 1\n[[budgets]]\nname = \"b\"\nmax_active = 2\n",
    );
    assert_eq!(e.location.map(|l| l.line), Some(4));

    let e = err(
        "[[freezes]]\nname = \"f\"\nstart = \"2027-01-01T00:00\"\nend = \"2027-01-02T00:00\"\ntime_zone = \"Mars/Olympus\"\n",
    );
    assert_eq!(e.message, "freeze `f`: `Mars/Olympus` is not a time zone");
    let e = err(
        "[[freezes]]\nname = \"f\"\nstart = \"2027-01-02T00:00\"\nend = \"2027-01-01T00:00\"\ntime_zone = \"UTC\"\n",
    );
    assert_eq!(e.message, "freeze `f` ends before it starts");

    let e = err("[[protected]]\nname = \"p\"\neffect = \"deny\"\n");
    assert!(e.message.contains("matches nothing"), "{e}");
    let e = err("[[protected]]\nname = \"p\"\ncidrs = [\"10.0.0.300/24\"]\neffect = \"deny\"\n");
    assert_eq!(e.location.map(|l| l.line), Some(3));

    let e = err("[circuit_breaker]\nwindow = \"10m\"\nmin_calls = 5\nmax_failure_rate = 2.0\n");
    assert!(e.message.contains("between 0 and 1"), "{e}");
    let e = err("[[rate_limits]]\nname = \"r\"\nkey = \"ip\"\nmax = 1\nper = \"1m\"\n");
    assert_eq!(e.location.map(|l| l.line), Some(3));
}

#[test]
fn fleet_sizes_are_read_per_scope() {
    let policy =
        Policy::from_toml("[fleet]\nglobal = 1000\n[fleet.site]\nhq = 400\nbranch = 50\n").unwrap();
    assert_eq!(policy.fleet.size("global", "global"), Some(1000));
    assert_eq!(policy.fleet.size("site", "hq"), Some(400));
    assert_eq!(policy.fleet.size("site", "lab"), None);
}

#[test]
fn the_policy_examples_in_the_readme_are_valid() {
    let readme = include_str!("../../../README.md");
    let start = readme.find("## The policy file").unwrap();
    let end = start + readme[start..].find("## Configuration").unwrap();
    let blocks: Vec<&str> = readme[start..end]
        .split("```toml\n")
        .skip(1)
        .map(|b| &b[..b.find("```").unwrap()])
        .collect();
    assert!(blocks.len() >= 6, "found {} blocks", blocks.len());
    let policy =
        Policy::from_toml(&blocks.concat()).unwrap_or_else(|e| panic!("README policy: {e}"));
    assert_eq!(policy.protected.len(), 3);
    assert_eq!(policy.budgets.len(), 1);
    assert_eq!(policy.fleet.size("site", "branch-lyon"), Some(80));
    assert!(policy.circuit_breaker.is_some());
}
