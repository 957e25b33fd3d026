//! TLS client configuration (rustls, ring provider): server certificate verified against the
//! configured CA file or the system bundle, host name checked, optional client certificate.
use std::{path::Path, sync::Arc};

use rustls_pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::{
    rustls::{crypto::ring, ClientConfig, RootCertStore},
    TlsConnector,
};

use super::config::TlsOptions;
use crate::sink::SinkError;

pub(crate) struct Tls {
    pub(crate) connector: TlsConnector,
    pub(crate) server_name: ServerName<'static>,
}

fn bad(m: String) -> SinkError {
    SinkError::Config(format!("syslog tls: {m}"))
}

fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, SinkError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| bad(format!("reading {what} {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(bad(format!(
            "{what} {} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(certs)
}

/// Builds the client configuration; every file is read now, so mistakes show at start-up.
pub(crate) fn configure(opts: &TlsOptions) -> Result<Tls, SinkError> {
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(read_certs(&opts.ca_file, "ca_file")?);
    if added == 0 {
        return Err(bad(format!(
            "no usable CA certificate in {} ({ignored} could not be parsed)",
            opts.ca_file.display()
        )));
    }
    let builder = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots);
    let config = match &opts.client_cert {
        Some((cert, key)) => {
            let chain = read_certs(cert, "client_cert")?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| bad(format!("reading client_key {}: {e}", key.display())))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| bad(format!("client certificate and key: {e}")))?
        }
        None => builder.with_no_client_auth(),
    };
    let server_name = ServerName::try_from(opts.server_name.clone())
        .map_err(|e| bad(format!("server_name {:?}: {e}", opts.server_name)))?;
    Ok(Tls {
        connector: TlsConnector::from(Arc::new(config)),
        server_name,
    })
}
