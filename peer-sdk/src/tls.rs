//! Peer identity: key pair and self-signed certificate, SPKI fingerprints, and the pinning
//! verifiers used on both sides of mutual TLS.
//!
//! Pinning compares the SHA-256 of the presented certificate's SubjectPublicKeyInfo with
//! the fingerprint the directory published, **and** verifies the TLS 1.3 handshake
//! signature with that certificate's key, so only the holder of the private key passes.
//! The expected pin travels in the TLS server name (`<32 hex>.<32 hex>.pin.peer`), because a
//! 64-character label is not a valid DNS name.

use crate::error::IdentityError;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, Error as TlsError, SignatureScheme};
use std::fmt;
use std::path::Path;
use std::sync::Arc;

/// ALPN protocol id of the peer protocol, version 1.
pub const ALPN: &[u8] = b"peer-sdk/1";

/// SHA-256 of a certificate's SubjectPublicKeyInfo DER (64 lowercase hex when printed): the
/// directory API's type, so a fingerprint read from the directory is the one pinned here.
pub use directory_api::Fingerprint;

/// What the peer SDK adds to a [`Fingerprint`]: computing it from an X.509 certificate.
pub trait CertificatePin: Sized {
    /// Fingerprint of an X.509 certificate.
    fn of_certificate(cert: &CertificateDer<'_>) -> Result<Self, IdentityError>;
}

impl CertificatePin for Fingerprint {
    fn of_certificate(cert: &CertificateDer<'_>) -> Result<Self, IdentityError> {
        let parsed = webpki::EndEntityCert::try_from(cert)
            .map_err(|e| IdentityError::BadCertificate(e.to_string()))?;
        Ok(Self::of_spki(parsed.subject_public_key_info().as_ref()))
    }
}

/// The pin carried by a server name made by [`Fingerprint::server_name`].
fn pin_of_server_name(name: &ServerName<'_>) -> Option<Fingerprint> {
    let ServerName::DnsName(dns) = name else {
        return None;
    };
    let mut parts = dns.as_ref().splitn(3, '.');
    let (a, b, rest) = (parts.next()?, parts.next()?, parts.next()?);
    if rest != Fingerprint::PIN_SUFFIX {
        return None;
    }
    format!("{a}{b}").parse().ok()
}

/// A peer's certificate and private key.
pub struct Identity {
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
    fingerprint: Fingerprint,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Self {
            cert: self.cert.clone(),
            key: self.key.clone_key(),
            fingerprint: self.fingerprint,
        }
    }
}

impl Identity {
    /// A fresh ECDSA P-256 key pair with a self-signed certificate.
    pub fn generate() -> Result<Self, IdentityError> {
        let ck = rcgen::generate_simple_self_signed(vec!["peer".to_owned()])
            .map_err(|e| IdentityError::Generate(e.to_string()))?;
        let cert = ck.cert.der().clone();
        let key = PrivateKeyDer::try_from(ck.signing_key.serialize_der())
            .map_err(|e| IdentityError::BadKey(e.into()))?;
        Self::from_der(cert, key)
    }

    /// From a DER certificate and private key.
    pub fn from_der(
        cert: CertificateDer<'static>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, IdentityError> {
        let fingerprint = Fingerprint::of_certificate(&cert)?;
        Ok(Self {
            cert,
            key,
            fingerprint,
        })
    }

    /// From PEM text: the first certificate of `cert_pem` and the private key in `key_pem`.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, IdentityError> {
        let cert = CertificateDer::from_pem_slice(cert_pem)
            .map_err(|e| IdentityError::BadCertificate(e.to_string()))?;
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| IdentityError::BadKey(e.to_string()))?;
        Self::from_der(cert, key)
    }

    /// Loads PEM files (certificate, private key).
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, IdentityError> {
        let read = |p: &Path| {
            std::fs::read(p)
                .map_err(|e| IdentityError::Read(p.display().to_string(), e.to_string()))
        };
        Self::from_pem(&read(cert_path)?, &read(key_path)?)
    }

    /// Certificate and key as PEM (to save a generated identity).
    pub fn to_pem(&self) -> (String, String) {
        let pem = |label: &str, der: &[u8]| {
            use base64::Engine as _;
            let body = base64::engine::general_purpose::STANDARD.encode(der);
            let lines: Vec<&str> = body
                .as_bytes()
                .chunks(64)
                .filter_map(|c| std::str::from_utf8(c).ok())
                .collect();
            format!(
                "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
                lines.join("\n")
            )
        };
        (
            pem("CERTIFICATE", self.cert.as_ref()),
            pem("PRIVATE KEY", self.key.secret_der()),
        )
    }

    /// The certificate fingerprint published in the directory.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// The certificate.
    pub fn certificate(&self) -> &CertificateDer<'static> {
        &self.cert
    }
}

/// The ring provider, used for every rustls config (never the process default).
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The handshake-signature half shared by both verifiers: TLS 1.3 only (QUIC requires
/// it), checked with the provider's algorithms against the presented certificate's key.
#[derive(Debug)]
struct Tls13Signatures {
    algs: WebPkiSupportedAlgorithms,
}

impl Tls13Signatures {
    fn new(provider: &CryptoProvider) -> Self {
        Self {
            algs: provider.signature_verification_algorithms,
        }
    }

    fn refuse_tls12() -> Result<HandshakeSignatureValid, TlsError> {
        Err(TlsError::PeerIncompatible(
            rustls::PeerIncompatible::Tls13RequiredForQuic,
        ))
    }

    fn verify(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// The fingerprint of a presented certificate, or the TLS error that ends the handshake.
fn presented_fingerprint(cert: &CertificateDer<'_>) -> Result<Fingerprint, TlsError> {
    Fingerprint::of_certificate(cert).map_err(|e| TlsError::General(e.to_string()))
}

/// Verifies that the server presents the certificate pinned in the server name.
#[derive(Debug)]
pub(crate) struct PinnedServerVerifier {
    signatures: Tls13Signatures,
}

impl PinnedServerVerifier {
    pub(crate) fn new(provider: &CryptoProvider) -> Self {
        Self {
            signatures: Tls13Signatures::new(provider),
        }
    }
}

impl ServerCertVerifier for PinnedServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        let expected = pin_of_server_name(server_name)
            .ok_or_else(|| TlsError::General("server name carries no certificate pin".into()))?;
        if presented_fingerprint(end_entity)? != expected {
            return Err(TlsError::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        Tls13Signatures::refuse_tls12()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.signatures.verify(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.signatures.schemes()
    }
}

/// Requires a client certificate and proof of its key; which certificates are acceptable
/// is decided after the handshake (by fingerprint, against the directory).
#[derive(Debug)]
pub(crate) struct AnyClientCertVerifier {
    signatures: Tls13Signatures,
}

impl AnyClientCertVerifier {
    pub(crate) fn new(provider: &CryptoProvider) -> Self {
        Self {
            signatures: Tls13Signatures::new(provider),
        }
    }
}

impl ClientCertVerifier for AnyClientCertVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, TlsError> {
        presented_fingerprint(end_entity)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        Tls13Signatures::refuse_tls12()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.signatures.verify(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.signatures.schemes()
    }
}

/// rustls client config presenting `identity` and pinning servers by fingerprint (the pin
/// travels in the server name, see [`Fingerprint::server_name`]). Public so that benchmarks
/// and custom transports can reuse exactly what the peer uses.
pub fn client_config(identity: &Identity) -> Result<rustls::ClientConfig, IdentityError> {
    let provider = provider();
    let verifier = Arc::new(PinnedServerVerifier::new(&provider));
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| IdentityError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(vec![identity.cert.clone()], identity.key.clone_key())
        .map_err(|e| IdentityError::Tls(e.to_string()))?;
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    Ok(cfg)
}

/// rustls server config presenting `identity` and requiring a client certificate (any
/// certificate whose key signs the handshake; senders are checked by fingerprint later).
pub fn server_config(identity: &Identity) -> Result<rustls::ServerConfig, IdentityError> {
    let provider = provider();
    let verifier = Arc::new(AnyClientCertVerifier::new(&provider));
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| IdentityError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![identity.cert.clone()], identity.key.clone_key())
        .map_err(|e| IdentityError::Tls(e.to_string()))?;
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    cfg.max_early_data_size = 0;
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn fingerprint_is_sha256_of_spki_and_round_trips_as_hex() {
        let id = Identity::generate().unwrap();
        let parsed = webpki::EndEntityCert::try_from(id.certificate()).unwrap();
        let expected = Sha256::digest(parsed.subject_public_key_info().as_ref());
        assert_eq!(id.fingerprint().0.as_slice(), expected.as_slice());
        let hex = id.fingerprint().to_string();
        assert_eq!(hex.len(), 64);
        assert_eq!(hex.parse::<Fingerprint>().unwrap(), id.fingerprint());
        assert!("ABCD".parse::<Fingerprint>().is_err());
        // One rule with the directory: upper case is accepted and normalised.
        let upper = hex.to_uppercase().parse::<Fingerprint>().unwrap();
        assert_eq!(upper.to_string(), hex);
    }

    #[test]
    fn pin_travels_in_a_valid_server_name() {
        let fp = Identity::generate().unwrap().fingerprint();
        let name = ServerName::try_from(fp.server_name()).unwrap();
        assert!(matches!(name, ServerName::DnsName(_)));
        assert_eq!(pin_of_server_name(&name), Some(fp));
        let other = ServerName::try_from("example.test").unwrap();
        assert_eq!(pin_of_server_name(&other), None);
    }

    #[test]
    fn identity_survives_pem_round_trip() {
        let id = Identity::generate().unwrap();
        let (cert, key) = id.to_pem();
        let back = Identity::from_pem(cert.as_bytes(), key.as_bytes()).unwrap();
        assert_eq!(back.fingerprint(), id.fingerprint());
        assert!(Identity::from_pem(b"junk", b"junk").is_err());
    }

    #[test]
    fn configs_build_without_a_process_wide_provider() {
        let id = Identity::generate().unwrap();
        client_config(&id).unwrap();
        server_config(&id).unwrap();
        assert!(CryptoProvider::get_default().is_none());
    }
}
