//! Secrets kept out of the configuration file: `password_file` and `header_files` name files
//! whose content is the value (one final newline dropped). A name without a `/` is a systemd
//! credential: the file of that name in `$CREDENTIALS_DIRECTORY`, which `LoadCredential=` or
//! `LoadCredentialEncrypted=` in the unit fills. Read when the output starts (and on reload).
use std::{
    collections::BTreeMap,
    io,
    path::{Path, PathBuf},
};

/// systemd's variable naming the directory of the unit's credentials.
pub(crate) const CREDENTIALS_DIRECTORY: &str = "CREDENTIALS_DIRECTORY";

#[derive(Debug, thiserror::Error)]
pub(crate) enum SecretError {
    #[error(
        "{key}: {name:?} names a systemd credential, but {CREDENTIALS_DIRECTORY} is not set \
         (LoadCredential={name}:FILE in the unit sets it; or give an absolute path)"
    )]
    NoCredentials { key: String, name: String },
    #[error("{key}: reading {}: {source}", path.display())]
    Read {
        key: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{key}: {} is empty", path.display())]
    Empty { key: String, path: PathBuf },
    #[error("{0} and {1} are both set: keep one")]
    Both(String, String),
}

/// The file `file` names: a path, or a credential in `credentials`.
pub(crate) fn locate(
    key: &str,
    file: &Path,
    credentials: Option<&Path>,
) -> Result<PathBuf, SecretError> {
    if file.components().count() > 1 || file.is_absolute() {
        return Ok(file.to_path_buf());
    }
    let dir = credentials.ok_or_else(|| SecretError::NoCredentials {
        key: key.to_string(),
        name: file.display().to_string(),
    })?;
    Ok(dir.join(file))
}

/// The secret in `file`, for the option `key` (named in errors; the value never is).
pub(crate) fn read(
    key: &str,
    file: &Path,
    credentials: Option<&Path>,
) -> Result<String, SecretError> {
    let path = locate(key, file, credentials)?;
    let text = std::fs::read_to_string(&path).map_err(|source| SecretError::Read {
        key: key.to_string(),
        path: path.clone(),
        source,
    })?;
    let value = text.strip_suffix('\n').unwrap_or(&text);
    let value = value.strip_suffix('\r').unwrap_or(value);
    if value.is_empty() {
        return Err(SecretError::Empty {
            key: key.to_string(),
            path,
        });
    }
    Ok(value.to_string())
}

/// The headers and password to send: inline ones plus those read from files.
pub(crate) fn resolve(
    headers: &BTreeMap<String, String>,
    header_files: &BTreeMap<String, PathBuf>,
    password: Option<&str>,
    password_file: Option<&Path>,
    credentials: Option<&Path>,
) -> Result<(BTreeMap<String, String>, Option<String>), SecretError> {
    let mut all = headers.clone();
    for (name, file) in header_files {
        if headers.keys().any(|h| h.eq_ignore_ascii_case(name)) {
            return Err(SecretError::Both(
                format!("headers.{name}"),
                format!("header_files.{name}"),
            ));
        }
        all.insert(
            name.clone(),
            read(&format!("header_files.{name}"), file, credentials)?,
        );
    }
    let password = match (password, password_file) {
        (Some(_), Some(_)) => {
            return Err(SecretError::Both("password".into(), "password_file".into()))
        }
        (Some(p), None) => Some(p.to_string()),
        (None, Some(f)) => Some(read("password_file", f, credentials)?),
        (None, None) => None,
    };
    Ok((all, password))
}

/// `$CREDENTIALS_DIRECTORY`, when systemd set it.
pub(crate) fn credentials_dir() -> Option<PathBuf> {
    std::env::var_os(CREDENTIALS_DIRECTORY)
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("flow-secrets-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn files_and_credentials_give_the_values() {
        let d = dir("ok");
        std::fs::write(d.join("key"), "s3cret\n").unwrap();
        std::fs::write(d.join("http-password"), "changeme").unwrap();
        let headers = BTreeMap::from([("X-Scope".to_string(), "a".to_string())]);
        let files = BTreeMap::from([("X-Api-Key".to_string(), d.join("key"))]);
        let (h, p) = resolve(
            &headers,
            &files,
            None,
            Some(Path::new("http-password")),
            Some(&d),
        )
        .unwrap();
        assert_eq!(h["X-Api-Key"], "s3cret");
        assert_eq!(h["X-Scope"], "a");
        assert_eq!(p.as_deref(), Some("changeme"));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn errors_name_the_option_and_file_never_the_value() {
        let d = dir("err");
        let none: BTreeMap<String, String> = BTreeMap::new();
        let no_files: BTreeMap<String, PathBuf> = BTreeMap::new();
        let err = resolve(&none, &no_files, None, Some(Path::new("pw")), None).unwrap_err();
        assert!(err.to_string().contains("CREDENTIALS_DIRECTORY"), "{err}");
        let err = resolve(&none, &no_files, None, Some(&d.join("missing")), None).unwrap_err();
        assert!(err.to_string().contains("password_file") && err.to_string().contains("missing"));
        std::fs::write(d.join("empty"), "\n").unwrap();
        let err = read("password_file", &d.join("empty"), None).unwrap_err();
        assert!(matches!(err, SecretError::Empty { .. }), "{err}");
        let err = resolve(&none, &no_files, Some("x"), Some(Path::new("/p")), None).unwrap_err();
        assert!(matches!(err, SecretError::Both(..)), "{err}");
        let inline = BTreeMap::from([("authorization".to_string(), "Bearer t0k".to_string())]);
        let files = BTreeMap::from([("Authorization".to_string(), d.join("empty"))]);
        let err = resolve(&inline, &files, None, None, None).unwrap_err();
        assert!(!err.to_string().contains("t0k"), "{err}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
