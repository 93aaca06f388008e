use super::*;
use crate::{
    conformance,
    edl::{Edl, EdlConfig},
};

fn edl(dir: &std::path::Path, name: &str) -> Arc<Edl> {
    let mut config = EdlConfig::with_default_lists(dir.join(name));
    config.name = name.into();
    Arc::new(Edl::open(config).unwrap())
}

fn block(ip: &str) -> Step {
    conformance::step("block_ip", "ip", ip, &[])
}

fn kind(k: &str) -> ActionKind {
    k.parse().unwrap()
}

#[test]
fn a_kind_goes_to_its_only_adapter_and_two_candidates_need_a_route() {
    let dir = tempfile::tempdir().unwrap();
    let mut registry = Registry::new();
    registry.register(edl(dir.path(), "east")).unwrap();
    assert_eq!(
        registry.resolve(&kind("block_ip"), None).unwrap().name(),
        "east"
    );
    let err = registry
        .resolve(&kind("revoke_credentials"), None)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("no adapter performs `revoke_credentials`"),
        "{err}"
    );

    registry.register(edl(dir.path(), "west")).unwrap();
    let err = registry
        .resolve(&kind("block_ip"), None)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("`east`, `west` all perform `block_ip`"),
        "{err}"
    );
    let west = ["west".to_owned()];
    assert_eq!(
        registry
            .resolve(&kind("block_ip"), Some(&west))
            .unwrap()
            .name(),
        "west"
    );
    assert!(matches!(
        registry.register(edl(dir.path(), "west")),
        Err(RegistryError::NameTaken(_))
    ));
}

#[test]
fn a_route_must_name_configured_adapters_that_perform_the_kind() {
    let dir = tempfile::tempdir().unwrap();
    let mut registry = Registry::new();
    registry.register(edl(dir.path(), "east")).unwrap();
    let err = registry
        .resolve(&kind("block_ip"), Some(&["gw".to_owned()]))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("names adapter `gw`, which is not configured (configured: east)"),
        "{err}"
    );
    let err = registry
        .resolve(&kind("disable_user"), Some(&["east".to_owned()]))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("which does not perform it"), "{err}");
}

#[tokio::test]
async fn a_fan_out_acts_on_every_member_and_undoes_on_every_member() {
    let dir = tempfile::tempdir().unwrap();
    let (east, west) = (edl(dir.path(), "east"), edl(dir.path(), "west"));
    let mut registry = Registry::new();
    registry.register(east.clone()).unwrap();
    registry.register(west.clone()).unwrap();
    let both = ["east".to_owned(), "west".to_owned()];
    let adapter = registry.resolve(&kind("block_ip"), Some(&both)).unwrap();
    let step = block("198.51.100.7");
    let handle = adapter.execute(conformance::action(&step)).await.unwrap();
    assert_eq!(handle.adapter, FANOUT);
    assert_eq!(handle.acted_by(), "east,west");
    assert_eq!(east.render("block").unwrap(), "198.51.100.7\n");
    assert_eq!(west.render("block").unwrap(), "198.51.100.7\n");

    // The registry undoes it from the handle alone, as after a restart.
    registry.rollback(&handle).await.unwrap();
    assert_eq!(east.render("block").unwrap(), "");
    assert_eq!(west.render("block").unwrap(), "");
}

#[tokio::test]
async fn a_fan_out_with_a_failing_member_leaves_nothing_in_force() {
    let dir = tempfile::tempdir().unwrap();
    let east = edl(dir.path(), "east");
    let mut strict = EdlConfig::with_default_lists(dir.path().join("strict"));
    strict.name = "strict".into();
    strict.min_prefix_v4 = 32;
    let strict = Arc::new(Edl::open(strict).unwrap());
    let mut registry = Registry::new();
    registry.register(east.clone()).unwrap();
    registry.register(strict).unwrap();
    let both = ["east".to_owned(), "strict".to_owned()];
    let adapter = registry.resolve(&kind("block_ip"), Some(&both)).unwrap();
    let step = block("198.51.100.0/24");
    let err = adapter
        .execute(conformance::action(&step))
        .await
        .unwrap_err();
    assert!(
        err.message
            .contains("strict: `198.51.100.0/24` is broader than /32"),
        "{err}"
    );
    assert!(!err.retryable());
    assert_eq!(east.render("block").unwrap(), "");
}
