//! HTTPS through the real binary: a client trusting the CA works, one that does not is
//! refused, mutual TLS refuses a client without a certificate, SIGHUP swaps the
//! certificate, and the header-read timeout also bounds a TLS handshake that never comes.

mod process_support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use process_support::{LogLines, send_signal, serve_command, spawn_capturing, wait_for_log};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::process::Child;

/// A certificate authority for the test.
struct Ca(CertifiedIssuer<'static, KeyPair>);

impl Ca {
    fn new(name: &str) -> Result<Self> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        Ok(Self(CertifiedIssuer::self_signed(
            params,
            KeyPair::generate()?,
        )?))
    }

    /// A leaf for `127.0.0.1` / `localhost` (server) or a client: (cert PEM, key PEM).
    fn leaf(&self) -> Result<(String, String)> {
        let key = KeyPair::generate()?;
        let params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?;
        let cert = params.signed_by(&key, &self.0)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    fn pem(&self) -> String {
        self.0.pem()
    }
}

/// A client trusting `ca` (none: trusting nothing), presenting `identity` (cert, key PEM).
fn client(ca: Option<&Ca>, identity: Option<&(String, String)>) -> Result<reqwest::Client> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    if let Some(ca) = ca {
        roots.add(CertificateDer::from_pem_slice(ca.pem().as_bytes())?)?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder.with_client_auth_cert(
            vec![CertificateDer::from_pem_slice(cert.as_bytes())?],
            PrivateKeyDer::from_pem_slice(key.as_bytes())?,
        )?,
    };
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .no_proxy()
        .tls_backend_preconfigured(config)
        .build()?)
}

fn write(dir: &Path, name: &str, text: &str) -> Result<String> {
    let path = dir.join(name);
    std::fs::write(&path, text)?;
    Ok(path.display().to_string())
}

/// A node serving HTTPS with `cert.pem`/`key.pem` in `dir` (and `extra` flags).
async fn start_node(dir: &Path, extra: &[&str]) -> Result<(Child, String, LogLines)> {
    let cert = dir.join("cert.pem").display().to_string();
    let key = dir.join("key.pem").display().to_string();
    let args = [
        &[
            "--log-filter",
            "info",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ],
        extra,
    ]
    .concat();
    let (child, addrs, log) = spawn_capturing(
        serve_command(&args),
        &["http_addr"],
        Duration::from_secs(20),
    )
    .await?;
    Ok((child, format!("https://{}", addrs[0]), log))
}

async fn health(client: &reqwest::Client, base: &str) -> Result<u16> {
    Ok(client
        .get(format!("{base}/v1/health"))
        .send()
        .await?
        .status()
        .as_u16())
}

#[tokio::test]
async fn a_client_trusting_the_ca_gets_in_and_a_sighup_swaps_the_certificate() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (old_ca, new_ca) = (Ca::new("old")?, Ca::new("new")?);
    let (cert, key) = old_ca.leaf()?;
    write(dir.path(), "cert.pem", &cert)?;
    write(dir.path(), "key.pem", &key)?;
    let (node, base, log) = start_node(dir.path(), &[]).await?;
    assert_eq!(health(&client(Some(&old_ca), None)?, &base).await?, 200);
    let untrusted = health(&client(None, None)?, &base).await;
    assert!(untrusted.is_err(), "a client trusting nothing is refused");
    let plain = client(None, None)?
        .get(base.replace("https", "http") + "/v1/health")
        .send()
        .await;
    assert!(
        plain.map_or(true, |r| !r.status().is_success()),
        "plain HTTP is not served"
    );

    let (cert, key) = new_ca.leaf()?;
    write(dir.path(), "cert.pem", &cert)?;
    write(dir.path(), "key.pem", &key)?;
    send_signal(&node, "HUP").await?;
    wait_for_log(&log, &["TLS certificate reloaded"], Duration::from_secs(5)).await?;
    assert_eq!(health(&client(Some(&new_ca), None)?, &base).await?, 200);
    assert!(
        health(&client(Some(&old_ca), None)?, &base).await.is_err(),
        "the old certificate is gone"
    );

    // A broken certificate file: the node says so and keeps serving the last good one.
    write(dir.path(), "cert.pem", "not a certificate")?;
    send_signal(&node, "HUP").await?;
    wait_for_log(
        &log,
        &["TLS certificate NOT reloaded"],
        Duration::from_secs(5),
    )
    .await?;
    assert_eq!(health(&client(Some(&new_ca), None)?, &base).await?, 200);
    Ok(())
}

#[tokio::test]
async fn mutual_tls_refuses_a_client_without_a_certificate() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (server_ca, client_ca) = (Ca::new("server")?, Ca::new("clients")?);
    let (cert, key) = server_ca.leaf()?;
    write(dir.path(), "cert.pem", &cert)?;
    write(dir.path(), "key.pem", &key)?;
    let client_ca_file = write(dir.path(), "clients.pem", &client_ca.pem())?;
    let (_node, base, _log) = start_node(dir.path(), &["--tls-client-ca", &client_ca_file]).await?;
    let identity = client_ca.leaf()?;
    assert_eq!(
        health(&client(Some(&server_ca), Some(&identity))?, &base).await?,
        200
    );
    assert!(
        health(&client(Some(&server_ca), None)?, &base)
            .await
            .is_err(),
        "no certificate"
    );
    let stranger = Ca::new("stranger")?.leaf()?;
    assert!(
        health(&client(Some(&server_ca), Some(&stranger))?, &base)
            .await
            .is_err(),
        "a certificate from another CA"
    );
    Ok(())
}

#[tokio::test]
async fn a_tls_connection_that_never_handshakes_is_closed_by_the_header_timeout() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (cert, key) = Ca::new("ca")?.leaf()?;
    write(dir.path(), "cert.pem", &cert)?;
    write(dir.path(), "key.pem", &key)?;
    let (_node, base, _log) = start_node(dir.path(), &["--header-read-timeout", "1s"]).await?;
    let mut silent = TcpStream::connect(base.trim_start_matches("https://")).await?;
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0) | Err(_))),
        "still open: {closed:?}"
    );
    Ok(())
}

#[tokio::test]
async fn the_cli_reaches_a_secured_node_with_its_token_and_ca() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = Ca::new("ca")?;
    let (cert, key) = ca.leaf()?;
    write(dir.path(), "cert.pem", &cert)?;
    write(dir.path(), "key.pem", &key)?;
    let ca_file = write(dir.path(), "ca.pem", &ca.pem())?;
    let acl = dir.path().join("acl.json");
    let token = |name: &str, rule: &str| {
        let out = std::process::Command::new(process_support::BIN)
            .args([
                "acl",
                "token",
                "create",
                "--name",
                name,
                "--rule",
                rule,
                "--acl-file",
            ])
            .arg(&acl)
            .output()?;
        let text = String::from_utf8(out.stdout)?;
        text.lines()
            .find_map(|l| l.strip_prefix("secret:"))
            .map(|s| s.trim().to_owned())
            .ok_or_else(|| anyhow::anyhow!("no secret in {text}"))
    };
    let billing = token("billing", "write:billing")?;
    let acl_flag = acl.display().to_string();
    let (_node, base, _log) = start_node(dir.path(), &["--acl-file", &acl_flag]).await?;
    let base = base.replace("127.0.0.1", "localhost");
    let cli = |args: &[&str]| {
        let mut cmd = std::process::Command::new(process_support::BIN);
        cmd.args(args)
            .args(["--addr", &base])
            .env_remove("DIRECTORY_ADDR")
            .env_remove("DIRECTORY_TOKEN")
            .env_remove("DIRECTORY_CA");
        cmd.output()
    };
    let register = ["register", "billing", "b1", "--address", "127.0.0.1:7000"];
    let ok = cli(&[&register[..], &["--token", &billing, "--ca", &ca_file]].concat())?;
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let no_ca = cli(&[&register[..], &["--token", &billing]].concat())?;
    let stderr = String::from_utf8_lossy(&no_ca.stderr).to_lowercase();
    assert!(
        !no_ca.status.success() && stderr.contains("certificate"),
        "{stderr}"
    );
    let other = ["register", "orders", "o1", "--address", "127.0.0.1:7000"];
    let refused = cli(&[&other[..], &["--token", &billing, "--ca", &ca_file]].concat())?;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("forbidden"),
        "{stderr}"
    );
    let anonymous = cli(&[&register[..], &["--ca", &ca_file]].concat())?;
    let stderr = String::from_utf8_lossy(&anonymous.stderr);
    assert!(
        !anonymous.status.success() && stderr.contains("unauthorized"),
        "{stderr}"
    );
    Ok(())
}
