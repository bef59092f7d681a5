//! [`ClientBuilder`]: node URLs, bearer token, certificate authorities and timeouts.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::{Client, ClientError, Inner};

/// Default time limit of one request (blocking lookups add their wait to it): long enough
/// for a loaded node, short enough that failover to the next URL is prompt.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time limit to open a connection: a node that does not accept within it is
/// treated as down and the next URL is tried.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Builds a [`Client`]. Start with [`Client::builder`].
#[derive(Clone)]
pub struct ClientBuilder {
    urls: Vec<String>,
    token: Option<String>,
    ca_pems: Vec<Vec<u8>>,
    system_roots: bool,
    timeout: Duration,
    connect_timeout: Duration,
    tls: Option<rustls::ClientConfig>,
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("urls", &self.urls)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("ca_pems", &self.ca_pems.len())
            .field("system_roots", &self.system_roots)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    pub(super) fn new(urls: Vec<String>) -> Self {
        Self {
            urls,
            token: None,
            ca_pems: Vec::new(),
            system_roots: true,
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            tls: None,
        }
    }

    /// Sends `Authorization: Bearer <token>` with every request (for directories with ACLs).
    #[must_use]
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Also trusts the CA certificate(s) in `pem` for `https` URLs (repeatable). The
    /// system's roots are trusted too unless [`system_roots(false)`](Self::system_roots).
    #[must_use]
    pub fn ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_pems.push(pem.into());
        self
    }

    /// Whether to trust the operating system's root certificates for `https` URLs
    /// (default: yes; they are loaded only when some URL is `https`).
    #[must_use]
    pub fn system_roots(mut self, yes: bool) -> Self {
        self.system_roots = yes;
        self
    }

    /// Time limit of one request [default: [`DEFAULT_TIMEOUT`]]; blocking lookups get their
    /// wait on top. Watch streams have no overall limit.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Time limit to open a connection [default: [`DEFAULT_CONNECT_TIMEOUT`]].
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Uses this rustls configuration for `https` instead of building one from the CA
    /// options (which are then ignored). Build it with an explicit crypto provider.
    #[must_use]
    pub fn tls_config(mut self, config: rustls::ClientConfig) -> Self {
        self.tls = Some(config);
        self
    }

    /// Checks the URLs and certificates and builds the client. Installs no process-wide
    /// crypto provider.
    pub fn build(self) -> Result<Client, ClientError> {
        if self.urls.is_empty() {
            return Err(ClientError::NoUrl);
        }
        let urls = self
            .urls
            .iter()
            .map(|u| normalize_url(u))
            .collect::<Result<Vec<_>, _>>()?;
        let tls = match self.tls {
            Some(tls) => tls,
            None => {
                let https = urls.iter().any(|u| u.scheme() == "https");
                tls_config(&self.ca_pems, self.system_roots && https)?
            }
        };
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(self.connect_timeout)
            .build()
            .map_err(|e| ClientError::TlsConfig(e.to_string()))?;
        Ok(Client(Arc::new(Inner {
            http,
            urls,
            preferred: Default::default(),
            token: self.token,
            timeout: self.timeout,
        })))
    }
}

/// `host:port` becomes `http://host:port`; only `http` and `https` are accepted. A path
/// (`https://h/directory`) is kept as a prefix of the API's paths.
pub(crate) fn normalize_url(text: &str) -> Result<reqwest::Url, ClientError> {
    let trimmed = text.trim();
    let full = if trimmed.contains("://") {
        trimmed.to_owned()
    } else {
        format!("http://{trimmed}")
    };
    let invalid = |reason: String| ClientError::InvalidUrl {
        url: text.to_owned(),
        reason,
    };
    let url = reqwest::Url::parse(&full).map_err(|e| invalid(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("the scheme must be http or https".into()));
    }
    if url.host_str().is_none() {
        return Err(invalid("no host".into()));
    }
    Ok(url)
}

/// A rustls configuration on the ring provider trusting `ca_pems` and, if asked, the
/// system's roots.
fn tls_config(ca_pems: &[Vec<u8>], system: bool) -> Result<rustls::ClientConfig, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    for pem in ca_pems {
        add_pem(&mut roots, pem)?;
    }
    if system {
        // Unreadable system certificates are skipped: the CA option still works, and an
        // untrusted server then fails with a TLS error naming the cause.
        let found = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(found.certs);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::TlsConfig(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

fn add_pem(roots: &mut rustls::RootCertStore, pem: &[u8]) -> Result<(), ClientError> {
    let bad = |reason: String| ClientError::TlsConfig(format!("CA certificate: {reason}"));
    let mut added = 0;
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| bad(e.to_string()))?;
        roots.add(cert).map_err(|e| bad(e.to_string()))?;
        added += 1;
    }
    if added == 0 {
        return Err(bad("no PEM certificate found".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_get_a_scheme_and_only_http_or_https_is_accepted() {
        assert_eq!(
            normalize_url("127.0.0.1:1").unwrap().as_str(),
            "http://127.0.0.1:1/"
        );
        assert_eq!(normalize_url("https://h:2/").unwrap().scheme(), "https");
        for bad in ["ftp://h:1", "http://", "::::", ""] {
            assert!(
                matches!(normalize_url(bad), Err(ClientError::InvalidUrl { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn building_needs_a_url_and_valid_pem_and_installs_no_provider() {
        assert!(matches!(
            ClientBuilder::new(vec![]).build(),
            Err(ClientError::NoUrl)
        ));
        let junk = ClientBuilder::new(vec!["https://h:1".into()]).ca_pem(b"junk".to_vec());
        assert!(matches!(junk.build(), Err(ClientError::TlsConfig(_))));
        assert!(ClientBuilder::new(vec!["h:1".into()]).build().is_ok());
        assert!(rustls::crypto::CryptoProvider::get_default().is_none());
    }

    #[test]
    fn the_token_is_not_printed() {
        let b = ClientBuilder::new(vec!["h:1".into()]).bearer_token("s3cret");
        assert!(!format!("{b:?}").contains("s3cret"));
    }
}
