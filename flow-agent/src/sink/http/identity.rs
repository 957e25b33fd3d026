//! The client certificate an HTTPS output shows a server that asks for one (mutual TLS):
//! `client_cert` and `client_key`, PEM files read and checked when the output starts (and on
//! reload). The key may be a systemd credential, as the secrets are: a name without `/` is the
//! file of that name in `$CREDENTIALS_DIRECTORY`.
use std::{
    io,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use tokio_rustls::rustls::{
    self,
    client::ResolvesClientCert,
    crypto,
    pki_types::{pem, pem::PemObject, CertificateDer, PrivateKeyDer},
    sign::CertifiedKey,
    InconsistentKeys, SignatureScheme,
};

use super::secrets::{self, SecretError};

/// A client certificate or key the output cannot use. Names the option and the file.
#[derive(Debug, thiserror::Error)]
pub(crate) enum IdentityError {
    #[error("client_cert and client_key go together: set both or neither")]
    Half,
    #[error(transparent)]
    Credential(#[from] SecretError),
    #[error("{option}: reading {}: {source}", path.display())]
    Read {
        option: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("client_cert {}: not PEM: {source}", path.display())]
    CertPem {
        path: PathBuf,
        #[source]
        source: pem::Error,
    },
    #[error("client_cert {}: no PEM certificate in it", path.display())]
    NoCert { path: PathBuf },
    #[error(
        "client_key {}: no PEM private key in it (PKCS#8, RSA or EC): {source}",
        path.display()
    )]
    NoKey {
        path: PathBuf,
        #[source]
        source: pem::Error,
    },
    #[error("client_key {} does not match the certificate of client_cert {}", key.display(), cert.display())]
    Mismatch { cert: PathBuf, key: PathBuf },
    #[error("client_cert {} and client_key {}: {source}", cert.display(), key.display())]
    Unusable {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
}

/// What the output shows a server asking for a client certificate; notes when it had none
/// to show, so that the server's refusal is not taken for a refusal of the records.
#[derive(Debug, Default)]
pub(crate) struct ClientAuth {
    certified: Option<Arc<CertifiedKey>>,
    asked_without: AtomicBool,
}

impl ClientAuth {
    /// Reads and checks `cert` and `key` (both or neither); `credentials` is
    /// `$CREDENTIALS_DIRECTORY`, where a key named without `/` is.
    pub(crate) fn load(
        cert: Option<&Path>,
        key: Option<&Path>,
        credentials: Option<&Path>,
    ) -> Result<Self, IdentityError> {
        let (cert, key) = match (cert, key) {
            (None, None) => return Ok(Self::default()),
            (Some(cert), Some(key)) => (cert, secrets::locate("client_key", key, credentials)?),
            _ => return Err(IdentityError::Half),
        };
        let chain = certificates(cert)?;
        let private = private_key(&key)?;
        let certified = CertifiedKey::from_der(chain, private, &crypto::ring::default_provider())
            .map_err(|source| match source {
            rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch) => {
                IdentityError::Mismatch {
                    cert: cert.to_path_buf(),
                    key: key.clone(),
                }
            }
            source => IdentityError::Unusable {
                cert: cert.to_path_buf(),
                key: key.clone(),
                source,
            },
        })?;
        Ok(Self {
            certified: Some(Arc::new(certified)),
            asked_without: AtomicBool::new(false),
        })
    }

    /// Whether a server asked for a client certificate and was given none.
    pub(crate) fn asked_without_certificate(&self) -> bool {
        self.asked_without.load(Ordering::Relaxed)
    }
}

impl ResolvesClientCert for ClientAuth {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        if self.certified.is_none() {
            self.asked_without.store(true, Ordering::Relaxed);
        }
        self.certified.clone()
    }

    fn has_certs(&self) -> bool {
        self.certified.is_some()
    }
}

fn read(option: &'static str, path: &Path) -> Result<Vec<u8>, IdentityError> {
    std::fs::read(path).map_err(|source| IdentityError::Read {
        option,
        path: path.to_path_buf(),
        source,
    })
}

/// The certificate chain of `path`, the output's own certificate first.
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, IdentityError> {
    let pem = read("client_cert", path)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| IdentityError::CertPem {
            path: path.to_path_buf(),
            source,
        })?;
    if chain.is_empty() {
        return Err(IdentityError::NoCert {
            path: path.to_path_buf(),
        });
    }
    Ok(chain)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, IdentityError> {
    let pem = read("client_key", path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|source| IdentityError::NoKey {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_option_and_the_file() {
        let dir = std::env::temp_dir().join(format!("flow-identity-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let text = dir.join("notes.txt");
        std::fs::write(&text, "not a certificate\n").unwrap();
        let load = |c: Option<&Path>, k: Option<&Path>| ClientAuth::load(c, k, None).unwrap_err();

        assert!(matches!(load(Some(&text), None), IdentityError::Half));
        let missing = dir.join("missing.pem");
        let err = load(Some(&missing), Some(&text));
        assert!(matches!(
            err,
            IdentityError::Read {
                option: "client_cert",
                ..
            }
        ));
        assert!(err.to_string().contains("missing.pem"), "{err}");
        let err = load(Some(&text), Some(&text));
        assert!(matches!(err, IdentityError::NoCert { .. }), "{err}");
        // A bare name is a systemd credential; without the directory, that is the error.
        let err = load(Some(&text), Some(Path::new("client-key")));
        assert!(err.to_string().contains("CREDENTIALS_DIRECTORY"), "{err}");
        assert!(ClientAuth::load(None, None, None).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn notes_a_request_it_cannot_answer() {
        let auth = ClientAuth::default();
        assert!(!auth.asked_without_certificate());
        assert!(auth.resolve(&[], &[]).is_none());
        assert!(auth.asked_without_certificate());
    }
}
