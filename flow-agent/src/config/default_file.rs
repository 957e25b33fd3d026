//! Which configuration file a command reads: the one `--config` names; else
//! `/etc/flow-agent/config.toml` when it exists (the packaged service's file, so that
//! `flow-agent check-config` and `flow-agent config` see what the service sees); else none,
//! and the built-in defaults apply. `--no-config` forces none.
use std::{
    io::ErrorKind,
    path::{Path, PathBuf},
};

/// Read when the command line names no file and this one exists.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/flow-agent/config.toml";
/// Replaces [`DEFAULT_CONFIG_FILE`]. For tests only, which must not write /etc on a shared
/// machine; an empty value is ignored.
pub const DEFAULT_CONFIG_ENV: &str = "FLOW_AGENT_DEFAULT_CONFIG";

/// Where the configuration comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigSource {
    /// `--config FILE` (or check-config's FILE).
    Given(PathBuf),
    /// No file named and [`default_path`] exists.
    Default(PathBuf),
    /// No file: the built-in defaults.
    BuiltIn,
}

impl ConfigSource {
    pub fn path(&self) -> Option<&Path> {
        match self {
            Self::Given(p) | Self::Default(p) => Some(p),
            Self::BuiltIn => None,
        }
    }

    pub fn into_path(self) -> Option<PathBuf> {
        match self {
            Self::Given(p) | Self::Default(p) => Some(p),
            Self::BuiltIn => None,
        }
    }
}

/// [`DEFAULT_CONFIG_FILE`], or `$FLOW_AGENT_DEFAULT_CONFIG` when set (tests).
pub fn default_path() -> PathBuf {
    default_path_from(std::env::var_os(DEFAULT_CONFIG_ENV))
}

fn default_path_from(env: Option<std::ffi::OsString>) -> PathBuf {
    env.filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_CONFIG_FILE), PathBuf::from)
}

/// The file to read: `given`; else, unless `no_config`, the default file when something is
/// there. Anything there but a missing file counts as there (an unreadable file, a dangling
/// link): loading it then says what is wrong rather than the agent quietly running with the
/// built-in defaults while the service's file says otherwise.
pub fn choose(given: Option<PathBuf>, no_config: bool) -> ConfigSource {
    choose_with(given, no_config, &default_path())
}

fn choose_with(given: Option<PathBuf>, no_config: bool, default: &Path) -> ConfigSource {
    match given {
        Some(p) => ConfigSource::Given(p),
        None if no_config => ConfigSource::BuiltIn,
        None => match std::fs::symlink_metadata(default) {
            Err(e) if e.kind() == ErrorKind::NotFound => ConfigSource::BuiltIn,
            _ => ConfigSource::Default(default.to_path_buf()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_moves_the_default() {
        assert_eq!(default_path_from(None), Path::new(DEFAULT_CONFIG_FILE));
        assert_eq!(
            default_path_from(Some("".into())),
            Path::new(DEFAULT_CONFIG_FILE)
        );
        assert_eq!(
            default_path_from(Some("/tmp/x.toml".into())),
            Path::new("/tmp/x.toml")
        );
    }

    #[test]
    fn given_then_default_when_present_then_built_in() {
        let dir = std::env::temp_dir().join(format!("flow-default-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let present = dir.join("config.toml");
        std::fs::write(&present, "").unwrap();
        let missing = dir.join("missing.toml");
        let given = PathBuf::from("/given.toml");
        assert_eq!(
            choose_with(Some(given.clone()), false, &present),
            ConfigSource::Given(given.clone())
        );
        assert_eq!(
            choose_with(None, false, &present),
            ConfigSource::Default(present.clone())
        );
        assert_eq!(choose_with(None, true, &present), ConfigSource::BuiltIn);
        assert_eq!(choose_with(None, false, &missing), ConfigSource::BuiltIn);
        // A dangling link is there: loading it reports the broken link.
        let link = dir.join("link.toml");
        std::os::unix::fs::symlink(&missing, &link).unwrap();
        assert_eq!(
            choose_with(None, false, &link),
            ConfigSource::Default(link.clone())
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
