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
        .check_action_kinds(|k| k.as_str() == "block_ip")
        .unwrap_err();
    assert_eq!(e.location.map(|l| l.line), Some(5));
    assert!(e.message.contains("`wipe_disk`"), "{e}");
    assert!(policy.check_action_kinds(|_| true).is_ok());
}
