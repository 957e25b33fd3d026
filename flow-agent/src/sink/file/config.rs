//! `[outputs.file]`: options, their defaults, and validation.
use std::{fmt, path::PathBuf};

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

use crate::sink::SinkError;

const MIB: u64 = 1024 * 1024;

/// `[outputs.file]` (docs/sink-file.md).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    /// The live file; rotated files are `<path>.1` (newest) … `<path>.N`. Absolute; its
    /// directory must exist.
    pub(crate) path: PathBuf,
    /// The live file is rotated before it would grow past this many bytes.
    #[serde(default = "default_rotate_size")]
    pub(crate) rotate_size: ByteSize,
    /// Seconds; the live file is rotated at the first write after a UTC-aligned period of
    /// this length ended (3600: hourly, 86400: daily at 00:00 UTC). 0: off.
    #[serde(default)]
    pub(crate) rotate_interval: u64,
    /// Rotated files kept; older ones are deleted. 0: no limit on the count.
    #[serde(default = "default_max_files")]
    pub(crate) max_files: u32,
    /// Cap on the bytes of the live file plus the rotated files; the oldest rotated files are
    /// deleted to stay under it. 0: no cap.
    #[serde(default)]
    pub(crate) max_total_size: ByteSize,
    /// Permissions of the files; never group- or other-writable.
    #[serde(default)]
    pub(crate) mode: FileMode,
    /// Group owning the files (name or numeric id), so that a shipper in that group can read
    /// them; default: the agent's group (or the directory's, if it is set-group-ID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) group: Option<String>,
}

fn default_rotate_size() -> ByteSize {
    ByteSize(100 * MIB)
}

fn default_max_files() -> u32 {
    10
}

impl Default for FileConfig {
    /// The documented defaults, with an empty (invalid) path.
    fn default() -> Self {
        Self {
            path: PathBuf::new(),
            rotate_size: default_rotate_size(),
            rotate_interval: 0,
            max_files: default_max_files(),
            max_total_size: ByteSize(0),
            mode: FileMode::default(),
            group: None,
        }
    }
}

fn invalid(msg: String) -> SinkError {
    SinkError::Config(format!("outputs.file.{msg}"))
}

impl FileConfig {
    /// Checks every option; the error names the option at fault.
    pub(crate) fn validate(&self) -> Result<(), SinkError> {
        if self.path.as_os_str().is_empty() {
            return Err(invalid("path is required".into()));
        }
        if !self.path.is_absolute() {
            return Err(invalid(format!(
                "path must be absolute, got {:?}",
                self.path.display().to_string()
            )));
        }
        if self.path.file_name().is_none() || self.path.as_os_str().to_string_lossy().ends_with('/')
        {
            return Err(invalid(format!(
                "path must name a file, got {:?}",
                self.path.display().to_string()
            )));
        }
        if self.rotate_size.0 == 0 {
            return Err(invalid("rotate_size must be > 0".into()));
        }
        if self.max_total_size.0 != 0 && self.max_total_size.0 < self.rotate_size.0 {
            return Err(invalid(format!(
                "max_total_size ({} bytes) must be 0 (no cap) or at least rotate_size ({} bytes)",
                self.max_total_size.0, self.rotate_size.0
            )));
        }
        self.mode.validate()?;
        if let Some(g) = &self.group {
            if g.is_empty() {
                return Err(invalid("group must not be empty".into()));
            }
        }
        Ok(())
    }
}

/// A size in bytes: a TOML integer, or a string with a unit — `"512KiB"`, `"100MiB"`, `"2GiB"`
/// (powers of 1024) or `"500KB"`, `"100MB"`, `"2GB"` (powers of 1000).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ByteSize(pub(crate) u64);

impl ByteSize {
    pub(crate) fn parse(s: &str) -> Result<Self, SizeError> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (digits, unit) = s.split_at(split);
        let n: u64 = digits.parse().map_err(|_| SizeError::NotASize(s.into()))?;
        let mult: u64 = match unit.trim() {
            "" | "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "TiB" => 1 << 40,
            "KB" | "kB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            "TB" => 1_000_000_000_000,
            other => {
                return Err(SizeError::UnknownUnit {
                    unit: other.into(),
                    size: s.into(),
                })
            }
        };
        n.checked_mul(mult)
            .map(ByteSize)
            .ok_or_else(|| SizeError::TooLarge(s.into()))
    }
}

/// Why a size text is not a size in bytes.
#[derive(Debug, PartialEq, thiserror::Error)]
pub(crate) enum SizeError {
    #[error("{0:?} is not a size: expected bytes, e.g. 1048576 or \"1MiB\"")]
    NotASize(String),
    #[error("unknown size unit {unit:?} in {size:?}: use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB")]
    UnknownUnit { unit: String, size: String },
    #[error("{0:?} is too large")]
    TooLarge(String),
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size in bytes (integer) or a string such as \"100MiB\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("a size cannot be negative, got {v}")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                ByteSize::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// Permission bits of the files: a TOML octal integer (`0o640`) or a string of octal digits
/// (`"0640"`, `"640"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FileMode(pub(crate) u32);

impl Default for FileMode {
    fn default() -> Self {
        FileMode(0o640)
    }
}

impl FileMode {
    fn validate(self) -> Result<(), SinkError> {
        let m = self.0;
        if m > 0o777 {
            // `mode = 640` in TOML is decimal 640 = 0o1200.
            return Err(invalid(format!(
                "mode {m} is not a permission mode: write it in octal, e.g. mode = 0o640 or mode = \"0640\""
            )));
        }
        if m & 0o022 != 0 {
            return Err(invalid(format!(
                "mode {m:#o} lets the group or others write the event file; use 0o640 or stricter"
            )));
        }
        if m & 0o600 != 0o600 {
            return Err(invalid(format!(
                "mode {m:#o} must let the owner read and write (0o600)"
            )));
        }
        Ok(())
    }
}

impl Serialize for FileMode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{:04o}", self.0))
    }
}

impl<'de> Deserialize<'de> for FileMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = FileMode;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a permission mode: 0o640 or \"0640\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<FileMode, E> {
                u32::try_from(v)
                    .map(FileMode)
                    .map_err(|_| E::custom(format!("mode {v} is not a permission mode")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<FileMode, E> {
                u32::try_from(v)
                    .map(FileMode)
                    .map_err(|_| E::custom(format!("mode {v} is not a permission mode")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<FileMode, E> {
                let digits = v.strip_prefix("0o").unwrap_or(v);
                u32::from_str_radix(digits, 8)
                    .map(FileMode)
                    .map_err(|_| E::custom(format!("mode {v:?} is not octal, e.g. \"0640\"")))
            }
        }
        d.deserialize_any(Visitor)
    }
}
