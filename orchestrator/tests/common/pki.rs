//! Certificates made for a test: a CA, the server's for `localhost`, one per client.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

pub struct Pki {
    dir: PathBuf,
}

impl Pki {
    /// A CA, the server's certificate for `localhost`, and a client certificate per name.
    pub fn new(dir: &Path, clients: &[&str]) -> Self {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "test CA");
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
        let issue = |name: &str, sans: Vec<String>| {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(sans).unwrap();
            p.distinguished_name.push(DnType::CommonName, name);
            let cert = p.signed_by(&key, &issuer).unwrap();
            std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
            std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
        };
        issue("server", vec!["localhost".into()]);
        for c in clients {
            issue(c, vec![]);
        }
        Self {
            dir: dir.to_path_buf(),
        }
    }

    /// A `[tls]` (or `[http.tls]`) table's keys for the server's certificate, without a
    /// client CA.
    pub fn server_tls(&self) -> String {
        format!(
            "cert = \"{}\"\nkey = \"{}\"\n",
            self.path("server.pem"),
            self.path("server.key")
        )
    }

    pub fn path(&self, file: &str) -> String {
        self.dir.join(file).to_str().unwrap().to_owned()
    }

    pub async fn channel(&self, port: u16, client: Option<&str>) -> Channel {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(
                std::fs::read(self.dir.join("ca.pem")).unwrap(),
            ))
            .domain_name("localhost");
        if let Some(c) = client {
            tls = tls.identity(Identity::from_pem(
                std::fs::read(self.dir.join(format!("{c}.pem"))).unwrap(),
                std::fs::read(self.dir.join(format!("{c}.key"))).unwrap(),
            ));
        }
        Channel::from_shared(format!("https://localhost:{port}"))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
            .unwrap()
    }
}
