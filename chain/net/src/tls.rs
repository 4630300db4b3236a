//! Self-signed TLS for QUIC: each node has a persistent self-signed certificate; clients pin
//! its SHA-256 fingerprint (from the membership) or, when none is known, accept any
//! certificate but still verify the handshake signature.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};

use crate::{NetError, Result};

/// Server name used in handshakes (certificates are pinned, not name-checked).
pub const SERVER_NAME: &str = "carchain-node";

fn tls_err(e: impl std::fmt::Display) -> NetError {
    NetError::Tls(e.to_string())
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A node's certificate and private key (DER).
#[derive(Clone)]
pub struct Identity {
    /// Certificate.
    pub cert: CertificateDer<'static>,
    key: Vec<u8>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("fingerprint", &self.fingerprint_hex())
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// A fresh self-signed identity.
    pub fn generate() -> Result<Self> {
        let ck =
            rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_string()]).map_err(tls_err)?;
        Ok(Self {
            cert: ck.cert.der().clone(),
            key: ck.key_pair.serialize_der(),
        })
    }

    /// Loads `cert.der`/`key.der` from `dir`, creating them on first start.
    pub fn load_or_create(dir: &Path) -> Result<Self> {
        let (c, k) = (dir.join("cert.der"), dir.join("key.der"));
        if c.exists() && k.exists() {
            return Ok(Self {
                cert: CertificateDer::from(std::fs::read(c)?),
                key: std::fs::read(k)?,
            });
        }
        let id = Self::generate()?;
        std::fs::write(&k, &id.key)?;
        std::fs::write(&c, id.cert.as_ref())?;
        Ok(id)
    }

    /// SHA-256 of the certificate.
    pub fn fingerprint(&self) -> [u8; 32] {
        Sha256::digest(self.cert.as_ref()).into()
    }

    /// Hex fingerprint, as written in membership files.
    pub fn fingerprint_hex(&self) -> String {
        hex::encode(self.fingerprint())
    }

    /// QUIC server configuration presenting this identity and speaking protocol `alpn`.
    pub fn server_config(&self, alpn: &[u8]) -> Result<quinn::ServerConfig> {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.clone()));
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls_err)?
            .with_no_client_auth()
            .with_single_cert(vec![self.cert.clone()], key)
            .map_err(tls_err)?;
        cfg.alpn_protocols = vec![alpn.to_vec()];
        let quic = quinn::crypto::rustls::QuicServerConfig::try_from(cfg).map_err(tls_err)?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(quic));
        server.transport_config(transport()?);
        Ok(server)
    }
}

fn transport() -> Result<Arc<quinn::TransportConfig>> {
    let mut t = quinn::TransportConfig::default();
    t.max_idle_timeout(Some(Duration::from_secs(10).try_into().map_err(tls_err)?));
    t.keep_alive_interval(Some(Duration::from_secs(3)));
    Ok(Arc::new(t))
}

#[derive(Debug)]
struct Pinned {
    expected: Option<[u8; 32]>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        match self.expected {
            Some(exp) if <[u8; 32]>::from(Sha256::digest(end_entity.as_ref())) != exp => {
                Err(rustls::Error::General(
                    "certificate fingerprint does not match the membership".into(),
                ))
            }
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// QUIC client configuration speaking protocol `alpn` and pinning `expected` (hex SHA-256 of
/// the server's certificate), if given. Without a pin any certificate is accepted (the handshake
/// signature is still verified); callers must then authenticate the peer above TLS, e.g. by
/// signing the connection's exported keying material.
pub fn client_config(expected: Option<&str>, alpn: &[u8]) -> Result<quinn::ClientConfig> {
    let expected = match expected {
        Some(h) => {
            let bytes = hex::decode(h).map_err(|_| NetError::Fingerprint("not hex"))?;
            Some(
                <[u8; 32]>::try_from(bytes.as_slice())
                    .map_err(|_| NetError::Fingerprint("not 32 bytes"))?,
            )
        }
        None => None,
    };
    let p = provider();
    let mut cfg = rustls::ClientConfig::builder_with_provider(p.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned {
            expected,
            provider: p,
        }))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![alpn.to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(cfg).map_err(tls_err)?;
    let mut client = quinn::ClientConfig::new(Arc::new(quic));
    client.transport_config(transport()?);
    Ok(client)
}
