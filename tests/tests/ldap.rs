//! The LDAP adapter against a real OpenLDAP slapd: the conformance kit in both styles, accounts
//! restored exactly as they were, hostile ids, and the loop over gRPC.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{sync::Arc, time::Duration};

use parapet_actions::{
    Adapter, BoxFuture, DynAdapter,
    config::AdapterConfig,
    conformance::{self, Subject, action},
    ldap::{Ldap, LdapConfig, Style},
};
use parapet_model::Step;
use parapet_tests::{
    Parapet, black_hole, block,
    slapd::{ADMIN_DN, ADMIN_PASSWORD, PEOPLE, Slapd},
    step, v1 as pb,
};

fn config(slapd: &Slapd, style: Style) -> LdapConfig {
    let password = slapd.dir.path().join("bind-password");
    std::fs::write(&password, format!("{ADMIN_PASSWORD}\n")).unwrap();
    LdapConfig {
        name: "directory".into(),
        url: slapd.url.clone(),
        style,
        bind_dn: ADMIN_DN.into(),
        secret_file: Some(password),
        secret_env: None,
        base_dn: PEOPLE.into(),
        user_attribute: None,
        starttls: false,
        kinds: vec!["revoke_credentials".parse().unwrap()],
        timeout: Duration::from_secs(5),
    }
}

fn account(id: &str) -> Step {
    conformance::step("revoke_credentials", "user", id, &[])
}

struct Directory {
    slapd: Slapd,
    style: Style,
    state: tempfile::TempDir,
    dns: Vec<String>,
}

impl Directory {
    async fn new(style: Style) -> Self {
        let slapd = Slapd::start().await;
        let mut dns = Vec::new();
        for n in 0..6 {
            let name = format!("user{n}");
            dns.push(match style {
                Style::Openldap => slapd.add_person(&name).await,
                Style::ActiveDirectory => slapd.add_ad_user(&name, 512).await,
            });
        }
        Self {
            slapd,
            style,
            state: tempfile::tempdir().unwrap(),
            dns,
        }
    }

    fn ldap(&self) -> Ldap {
        Ldap::open(config(&self.slapd, self.style), self.state.path()).unwrap()
    }
}

impl Subject for Directory {
    fn open(&self) -> BoxFuture<'_, Arc<dyn DynAdapter>> {
        let l = self.ldap();
        Box::pin(async move { Arc::new(l) as Arc<dyn DynAdapter> })
    }

    fn step(&self, n: u32) -> Step {
        account(&format!("user{n}"))
    }

    fn in_force(&self, n: u32) -> BoxFuture<'_, bool> {
        Box::pin(async move { !self.slapd.can_bind(&self.dns[n as usize]).await })
    }
}

#[tokio::test]
async fn openldap_accounts_pass_the_conformance_kit_with_ppolicy_locks() {
    let dir = Directory::new(Style::Openldap).await;
    assert!(
        dir.slapd.can_bind(&dir.dns[0]).await,
        "accounts log in to begin with"
    );
    conformance::run(&dir).await;
    for dn in &dir.dns {
        assert!(
            dir.slapd.attr(dn, "pwdAccountLockedTime").await.is_empty(),
            "{dn}"
        );
    }
    let message = conformance::permanent(&dir.ldap(), &account("nobody")).await;
    assert!(message.contains("no account `nobody`"), "{message}");
}

#[tokio::test]
async fn active_directory_accounts_pass_the_conformance_kit_with_the_disable_bit() {
    let dir = Directory::new(Style::ActiveDirectory).await;
    // in_force for AD-style accounts is read from userAccountControl: slapd does not enforce it.
    struct Ad<'a>(&'a Directory);
    impl Subject for Ad<'_> {
        fn open(&self) -> BoxFuture<'_, Arc<dyn DynAdapter>> {
            self.0.open()
        }
        fn step(&self, n: u32) -> Step {
            self.0.step(n)
        }
        fn in_force(&self, n: u32) -> BoxFuture<'_, bool> {
            Box::pin(async move {
                let flags = self
                    .0
                    .slapd
                    .attr(&self.0.dns[n as usize], "userAccountControl")
                    .await;
                flags[0].parse::<u32>().unwrap() & 2 != 0
            })
        }
    }
    conformance::run(&Ad(&dir)).await;
    for dn in &dir.dns {
        assert_eq!(
            dir.slapd.attr(dn, "userAccountControl").await,
            ["512"],
            "{dn}"
        );
    }
}

#[tokio::test]
async fn rollback_restores_the_account_exactly_as_it_was() {
    let dir = Directory::new(Style::ActiveDirectory).await;
    // A service account with "password never expires" (0x10000) and "normal" (0x200).
    let dn = dir.slapd.add_ad_user("svc-backup", 0x10200).await;
    let ldap = dir.ldap();
    let target = account("svc-backup");
    let handle = Adapter::execute(&ldap, action(&target)).await.unwrap();
    assert_eq!(dir.slapd.attr(&dn, "userAccountControl").await, ["66050"]);
    Adapter::rollback(&ldap, handle).await.unwrap();
    assert_eq!(dir.slapd.attr(&dn, "userAccountControl").await, ["66048"]);

    // An account an administrator had already disabled stays disabled after Parapet's rollback.
    let off = dir.slapd.add_ad_user("leaver", 514).await;
    let target = account("leaver");
    let handle = Adapter::execute(&ldap, action(&target)).await.unwrap();
    Adapter::rollback(&ldap, handle).await.unwrap();
    assert_eq!(dir.slapd.attr(&off, "userAccountControl").await, ["514"]);
}

#[tokio::test]
async fn a_hostile_id_is_a_filter_value_and_a_dead_or_hung_server_is_transient() {
    let dir = Directory::new(Style::Openldap).await;
    let ldap = dir.ldap();
    // Unescaped, `*` would match every account.
    let message = conformance::permanent(&ldap, &account("*")).await;
    assert!(message.contains("no account `*`"), "{message}");
    let message = conformance::permanent(&ldap, &account("user0)(uid=*")).await;
    assert!(message.contains("no account"), "{message}");
    for dn in &dir.dns {
        assert!(dir.slapd.can_bind(dn).await);
    }

    let mut c = config(&dir.slapd, Style::Openldap);
    c.url = "ldap://127.0.0.1:1".into();
    let dead = Ldap::open(c, dir.state.path()).unwrap();
    conformance::transient(&dead, &account("user0")).await;

    let mut c = config(&dir.slapd, Style::Openldap);
    c.url = format!("ldap://{}", black_hole().await);
    c.timeout = Duration::from_secs(1);
    let hung = Ldap::open(c.clone(), dir.state.path()).unwrap();
    let message = conformance::bounded(&hung, &account("user0"), c.timeout).await;
    assert!(message.contains("no answer within 1s"), "{message}");

    let mut c = config(&dir.slapd, Style::Openldap);
    std::fs::write(c.secret_file.as_ref().unwrap(), "wrong").unwrap();
    let refused = Ldap::open(c.clone(), dir.state.path()).unwrap();
    let message = conformance::permanent(&refused, &account("user0")).await;
    assert!(message.contains("result 49"), "{message}");
    c.secret_file = None;
    assert!(Ldap::open(c, dir.state.path()).is_err());
}

const POLICY: &str = r#"
[[detections]]
id = "edr.c2_beacon"

[detections.actions]
revoke_credentials = "auto"
"#;

#[tokio::test]
async fn a_revocation_over_grpc_locks_the_account_until_rollback() {
    let slapd = Slapd::start().await;
    let dn = slapd.add_person("mallory").await;
    let adapters = vec![AdapterConfig::Ldap(config(&slapd, Style::Openldap))];
    let parapet = Parapet::start_with_adapters(POLICY, adapters)
        .await
        .unwrap();
    let req = pb::SubmitIntentRequest {
        steps: vec![step("revoke_credentials", "user", "mallory", &[])],
        ..block("k1", "unused")
    };
    let intent = parapet.submit(req).await.unwrap().intent.unwrap();
    assert_eq!(intent.state, pb::IntentState::Active as i32);
    assert!(
        !slapd.can_bind(&dn).await,
        "a revoked account still logs in"
    );

    // The state before survives a restart, and the rollback after it restores it.
    let parapet = parapet.stop().await.start().await;
    let rolled = parapet.rollback(&intent.intent_id, "false positive").await;
    assert_eq!(rolled.state, pb::IntentState::RolledBack as i32);
    assert!(slapd.can_bind(&dn).await);
    assert!(slapd.attr(&dn, "pwdAccountLockedTime").await.is_empty());

    // An account that does not exist fails the intent, saying so.
    let req = pb::SubmitIntentRequest {
        steps: vec![step("revoke_credentials", "user", "nobody", &[])],
        ..block("k2", "unused")
    };
    let intent = parapet.submit(req).await.unwrap().intent.unwrap();
    assert_eq!(intent.state, pb::IntentState::Failed as i32);
    assert!(
        intent.error.contains("no account `nobody`"),
        "{}",
        intent.error
    );
}
