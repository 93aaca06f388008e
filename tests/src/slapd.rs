//! A real OpenLDAP `slapd` for the LDAP adapter's tests: started on a free loopback port with a
//! throw-away database, the ppolicy overlay (so `pwdAccountLockedTime` really refuses a bind)
//! and the part of Active Directory's schema the adapter uses (`fixtures/slapd/ad.schema`).
//! Stopped and deleted on drop.

use std::{
    collections::HashSet,
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use ldap3::{LdapConnAsync, Scope, SearchEntry};

pub const SUFFIX: &str = "dc=example,dc=com";
pub const PEOPLE: &str = "ou=people,dc=example,dc=com";
pub const ADMIN_DN: &str = "cn=admin,dc=example,dc=com";
pub const ADMIN_PASSWORD: &str = "slapd-admin-secret";
/// Every seeded account's password.
pub const USER_PASSWORD: &str = "user-password";

pub struct Slapd {
    pub url: String,
    pub dir: tempfile::TempDir,
    child: Child,
}

fn config(dir: &Path) -> String {
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/slapd/ad.schema");
    format!(
        "include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include {schema}
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload ppolicy
pidfile {dir}/slapd.pid
database mdb
maxsize 10485760
suffix \"{SUFFIX}\"
rootdn \"{ADMIN_DN}\"
rootpw {ADMIN_PASSWORD}
directory {dir}/db
overlay ppolicy
ppolicy_default \"cn=default,ou=policies,{SUFFIX}\"
",
        schema = schema.display(),
        dir = dir.display()
    )
}

impl Slapd {
    pub async fn start() -> Self {
        let slapd = Path::new("/usr/sbin/slapd");
        assert!(
            slapd.exists(),
            "slapd is not installed: run .ci/install-test-deps (as root)"
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("db")).unwrap();
        let conf = dir.path().join("slapd.conf");
        std::fs::write(&conf, config(dir.path())).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("ldap://127.0.0.1:{port}");
        let log = std::fs::File::create(dir.path().join("slapd.log")).unwrap();
        let child = Command::new(slapd)
            .arg("-f")
            .arg(&conf)
            .args(["-h", &format!("{url}/"), "-d", "0"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("cannot start slapd");
        let mut up = false;
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let s = Self { url, dir, child };
        if !up {
            let log = std::fs::read_to_string(s.dir.path().join("slapd.log")).unwrap_or_default();
            panic!("slapd did not start: {log}");
        }
        s.seed().await;
        s
    }

    async fn admin(&self) -> ldap3::Ldap {
        let (conn, mut ldap) = LdapConnAsync::new(&self.url).await.unwrap();
        ldap3::drive!(conn);
        ldap.simple_bind(ADMIN_DN, ADMIN_PASSWORD)
            .await
            .unwrap()
            .success()
            .unwrap();
        ldap
    }

    async fn add(&self, dn: &str, attrs: Vec<(&str, Vec<&str>)>) {
        let attrs = attrs
            .into_iter()
            .map(|(a, v)| (a, v.into_iter().collect::<HashSet<_>>()))
            .collect();
        let mut ldap = self.admin().await;
        ldap.add(dn, attrs).await.unwrap().success().unwrap();
    }

    async fn seed(&self) {
        self.add(
            SUFFIX,
            vec![
                ("objectClass", vec!["dcObject", "organization"]),
                ("o", vec!["Example"]),
                ("dc", vec!["example"]),
            ],
        )
        .await;
        for ou in ["people", "policies"] {
            self.add(
                &format!("ou={ou},{SUFFIX}"),
                vec![
                    ("objectClass", vec!["organizationalUnit"]),
                    ("ou", vec![ou]),
                ],
            )
            .await;
        }
        self.add(
            &format!("cn=default,ou=policies,{SUFFIX}"),
            vec![
                ("objectClass", vec!["device", "pwdPolicy"]),
                ("cn", vec!["default"]),
                ("pwdAttribute", vec!["userPassword"]),
                ("pwdLockout", vec!["TRUE"]),
            ],
        )
        .await;
    }

    /// An OpenLDAP account, `uid=NAME,ou=people,...`.
    pub async fn add_person(&self, uid: &str) -> String {
        let dn = format!("uid={uid},{PEOPLE}");
        self.add(
            &dn,
            vec![
                ("objectClass", vec!["inetOrgPerson"]),
                ("uid", vec![uid]),
                ("cn", vec![uid]),
                ("sn", vec![uid]),
                ("userPassword", vec![USER_PASSWORD]),
            ],
        )
        .await;
        dn
    }

    /// An Active Directory style account with these `userAccountControl` flags.
    pub async fn add_ad_user(&self, sam: &str, flags: u32) -> String {
        let dn = format!("cn={sam},{PEOPLE}");
        let flags = flags.to_string();
        self.add(
            &dn,
            vec![
                ("objectClass", vec!["user"]),
                ("cn", vec![sam]),
                ("sn", vec![sam]),
                ("sAMAccountName", vec![sam]),
                ("userAccountControl", vec![flags.as_str()]),
                ("userPassword", vec![USER_PASSWORD]),
            ],
        )
        .await;
        dn
    }

    /// The values of one attribute (operational ones too).
    pub async fn attr(&self, dn: &str, attr: &str) -> Vec<String> {
        let mut ldap = self.admin().await;
        let (entries, _) = ldap
            .search(dn, Scope::Base, "(objectClass=*)", vec![attr])
            .await
            .unwrap()
            .success()
            .unwrap();
        let entry = SearchEntry::construct(entries.into_iter().next().unwrap());
        entry.attrs.get(attr).cloned().unwrap_or_default()
    }

    /// Whether the account can log in with its password.
    pub async fn can_bind(&self, dn: &str) -> bool {
        let (conn, mut ldap) = LdapConnAsync::new(&self.url).await.unwrap();
        ldap3::drive!(conn);
        let ok = ldap
            .simple_bind(dn, USER_PASSWORD)
            .await
            .is_ok_and(|r| r.rc == 0);
        let _ = ldap.unbind().await;
        ok
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
