//! TLS client settings: rustls with the ring provider, trusting the system's CA certificates
//! or those of `ca_file`, showing the client certificate of [`ClientAuth`] if asked.
use std::{
    io,
    path::{Path, PathBuf},
    sync::Arc,
};

use super::identity::ClientAuth;
use tokio_rustls::rustls::{
    self,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::{self, CryptoProvider},
    pki_types::{pem, pem::PemObject, CertificateDer, ServerName, UnixTime},
    ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

/// TLS settings the sink cannot use. Names the option and file.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TlsError {
    #[error("TLS settings: {0}")]
    Settings(#[source] rustls::Error),
    #[error("ca_file {}: {source}", path.display())]
    CaRead {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("ca_file {}: {source}", path.display())]
    CaPem {
        path: PathBuf,
        #[source]
        source: pem::Error,
    },
    #[error("ca_file {}: {source}", path.display())]
    CaCertificate {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("ca_file {}: no PEM certificate in it", path.display())]
    CaEmpty { path: PathBuf },
    #[error("no system CA certificates found to verify the server: set ca_file")]
    NoSystemCa,
}

/// The settings of an HTTPS output; `auth` answers a server asking for a client certificate.
pub(crate) fn client_config(
    ca_file: Option<&Path>,
    verify: bool,
    auth: Arc<ClientAuth>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = Arc::new(crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Settings)?;
    let mut config = if verify {
        builder
            .with_root_certificates(roots(ca_file)?)
            .with_client_cert_resolver(auth)
    } else {
        log::warn!("http sink: tls_verify = false, the server's certificate is not checked");
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            .with_client_cert_resolver(auth)
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn roots(ca_file: Option<&Path>) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let path = path.to_path_buf();
            let pem = match std::fs::read(&path) {
                Ok(pem) => pem,
                Err(source) => return Err(TlsError::CaRead { path, source }),
            };
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = match cert {
                    Ok(cert) => cert,
                    Err(source) => return Err(TlsError::CaPem { path, source }),
                };
                if let Err(source) = store.add(cert) {
                    return Err(TlsError::CaCertificate { path, source });
                }
            }
            if store.is_empty() {
                return Err(TlsError::CaEmpty { path });
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                log::warn!("http sink: system CA certificates: {e}");
            }
            let (added, _ignored) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(TlsError::NoSystemCa);
            }
        }
    }
    Ok(store)
}

/// `tls_verify = false`: any certificate and name are accepted; handshake signatures are still
/// checked so that the session keys belong to whoever sent that certificate.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
