//! The values a filter rule compares: CIDRs, port ranges, transports, directions, patterns,
//! users, container ids and cgroup paths. Each parses from the text (or integer) a
//! configuration file gives, with an error that says what was expected, and serializes back
//! to that text.
use std::{fmt, marker::PhantomData, net::IpAddr};

use serde::{
    de::{self, SeqAccess, Visitor},
    Deserializer, Serialize, Serializer,
};

use super::glob::Glob;
use crate::enrich::networks::{Cidr, CidrError};

/// A value a rule condition accepts, from a TOML string or integer.
pub(crate) trait Scalar: Sized {
    /// What the configuration must give, for error messages.
    const EXPECTED: &'static str;
    fn from_text(s: &str) -> Result<Self, ValueError>;
    fn from_int(_v: i64) -> Result<Self, ValueError> {
        Err(ValueError::Expected(Self::EXPECTED))
    }
}

/// Why a value in a filter rule is not one the condition accepts.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ValueError {
    #[error("expected {0}")]
    Expected(&'static str),
    #[error("{:?} is not a CIDR (expected e.g. 10.0.0.0/8 or fd00::/8): {}", .0.text, .0.reason)]
    NotACidr(#[source] CidrError),
    #[error("{0:?} is not a port or port range (expected e.g. 53 or \"8000-8100\")")]
    NotAPort(String),
    #[error("port range {0:?} ends before it starts (expected LOW-HIGH with LOW <= HIGH)")]
    BackwardsRange(String),
    #[error("port {0} is out of range (0-65535)")]
    PortOutOfRange(i64),
    #[error("{text:?} is not valid here (expected {expected})")]
    NotAWord {
        text: String,
        expected: &'static str,
    },
    #[error("an empty pattern matches nothing (expected a name, a path or a glob such as \"/usr/bin/*\")")]
    EmptyPattern,
    #[error("an empty user name (expected a user name or a uid)")]
    EmptyUser,
    #[error("uid {0} is out of range (0-4294967295)")]
    UidOutOfRange(i64),
    #[error(
        "{0:?} is not a container id (expected 1 to 64 hexadecimal digits, e.g. \"3f4e1a2b9c0d\")"
    )]
    NotAContainerId(String),
    #[error("{0:?} is not a cgroup path (expected a path from the cgroup root, e.g. \"/system.slice/sshd.service\")")]
    NotACgroup(String),
}

/// One value or a list of values: `remote_port = 53` and `remote_port = [53, "8000-8100"]`.
pub(crate) fn one_or_many<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Scalar,
{
    d.deserialize_any(ScalarVisitor::<T, true>(PhantomData))
}

struct ScalarVisitor<T, const LIST: bool>(PhantomData<T>);

impl<'de, T: Scalar, const LIST: bool> Visitor<'de> for ScalarVisitor<T, LIST> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if LIST {
            write!(f, "{} or a list of them", T::EXPECTED)
        } else {
            f.write_str(T::EXPECTED)
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<T>, E> {
        T::from_text(v).map(|x| vec![x]).map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Vec<T>, E> {
        T::from_int(v).map(|x| vec![x]).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Vec<T>, E> {
        let v = i64::try_from(v).map_err(|_| E::custom(ValueError::Expected(T::EXPECTED)))?;
        self.visit_i64(v)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        if !LIST {
            return Err(de::Error::invalid_type(de::Unexpected::Seq, &self));
        }
        let mut out = Vec::new();
        while let Some(mut one) = seq.next_element_seed(ScalarSeed::<T>(PhantomData))? {
            out.append(&mut one);
        }
        Ok(out)
    }
}

struct ScalarSeed<T>(PhantomData<T>);

impl<'de, T: Scalar> de::DeserializeSeed<'de> for ScalarSeed<T> {
    type Value = Vec<T>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<T>, D::Error> {
        d.deserialize_any(ScalarVisitor::<T, false>(PhantomData))
    }
}

macro_rules! text_serialize {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    };
}

/// A network in CIDR notation, kept with the text it was written as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Network {
    pub(crate) cidr: Cidr,
    text: String,
}

impl Network {
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        self.cidr.contains(ip)
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.text)
    }
}
text_serialize!(Network);

impl Scalar for Network {
    const EXPECTED: &'static str = "a CIDR such as 10.0.0.0/8 or fd00::/8";
    fn from_text(s: &str) -> Result<Self, ValueError> {
        let cidr = s.parse::<Cidr>().map_err(ValueError::NotACidr)?;
        Ok(Self {
            cidr,
            text: s.to_string(),
        })
    }
}

/// One port or an inclusive range `"LOW-HIGH"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PortRange {
    pub(crate) low: u16,
    pub(crate) high: u16,
}

impl PortRange {
    pub(crate) fn contains(&self, port: u16) -> bool {
        (self.low..=self.high).contains(&port)
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if self.low == self.high {
            write!(f, "{}", self.low)
        } else {
            write!(f, "{}-{}", self.low, self.high)
        }
    }
}

impl Serialize for PortRange {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.low == self.high {
            s.serialize_u16(self.low)
        } else {
            s.collect_str(self)
        }
    }
}

impl Scalar for PortRange {
    const EXPECTED: &'static str = "a port (0-65535) or a range \"LOW-HIGH\"";
    fn from_text(s: &str) -> Result<Self, ValueError> {
        let bad = || ValueError::NotAPort(s.into());
        let port = |p: &str| p.trim().parse::<u16>().map_err(|_| bad());
        let (low, high) = match s.split_once('-') {
            Some((l, h)) => (port(l)?, port(h)?),
            None => (port(s)?, port(s)?),
        };
        if low > high {
            return Err(ValueError::BackwardsRange(s.into()));
        }
        Ok(Self { low, high })
    }
    fn from_int(v: i64) -> Result<Self, ValueError> {
        let p = u16::try_from(v).map_err(|_| ValueError::PortOutOfRange(v))?;
        Ok(Self { low: p, high: p })
    }
}

macro_rules! word_enum {
    ($name:ident, $expected:literal, $($variant:ident = $text:literal),+) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub(crate) enum $name { $($variant),+ }

        impl $name {
            pub(crate) fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        text_serialize!($name);

        impl Scalar for $name {
            const EXPECTED: &'static str = $expected;
            fn from_text(s: &str) -> Result<Self, ValueError> {
                match s {
                    $($text => Ok(Self::$variant),)+
                    _ => Err(ValueError::NotAWord { text: s.into(), expected: $expected }),
                }
            }
        }
    };
}

word_enum!(Transport, "\"tcp\" or \"udp\"", Tcp = "tcp", Udp = "udp");
word_enum!(
    Direction,
    "\"inbound\" or \"outbound\"",
    Inbound = "inbound",
    Outbound = "outbound"
);

/// An exact text or a glob (`*` any run of characters, `?` one character).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Pattern(Glob);

impl Pattern {
    pub(crate) fn matches(&self, s: &str) -> bool {
        self.0.matches(s)
    }

    /// Whether the pattern names a path (has a `/`) rather than a file name.
    pub(crate) fn is_path(&self) -> bool {
        self.0.text().contains('/')
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.0.text())
    }
}
text_serialize!(Pattern);

impl Scalar for Pattern {
    const EXPECTED: &'static str = "a name, a path or a glob pattern";
    fn from_text(s: &str) -> Result<Self, ValueError> {
        if s.is_empty() {
            return Err(ValueError::EmptyPattern);
        }
        Ok(Self(Glob::new(s)))
    }
}

/// A user by name (string) or uid (integer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum UserRef {
    Name(String),
    Uid(u32),
}

impl UserRef {
    pub(crate) fn matches(&self, name: Option<&str>, uid: Option<u32>) -> bool {
        match self {
            Self::Name(n) => name == Some(n.as_str()),
            Self::Uid(u) => uid == Some(*u),
        }
    }
}

impl Serialize for UserRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Name(n) => s.serialize_str(n),
            Self::Uid(u) => s.serialize_u32(*u),
        }
    }
}

impl Scalar for UserRef {
    const EXPECTED: &'static str = "a user name (string) or a uid (integer)";
    fn from_text(s: &str) -> Result<Self, ValueError> {
        if s.is_empty() {
            return Err(ValueError::EmptyUser);
        }
        Ok(Self::Name(s.to_string()))
    }
    fn from_int(v: i64) -> Result<Self, ValueError> {
        u32::try_from(v)
            .map(Self::Uid)
            .map_err(|_| ValueError::UidOutOfRange(v))
    }
}

/// A container id or a prefix of one (hexadecimal, as `docker ps` shows 12 digits of it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ContainerId(String);

impl ContainerId {
    pub(crate) fn matches(&self, id: &str) -> bool {
        id.starts_with(&self.0)
    }
}

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.0)
    }
}
text_serialize!(ContainerId);

impl Scalar for ContainerId {
    const EXPECTED: &'static str = "a container id or a prefix of one (hexadecimal)";
    fn from_text(s: &str) -> Result<Self, ValueError> {
        if s.is_empty() || s.len() > 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ValueError::NotAContainerId(s.into()));
        }
        Ok(Self(s.to_ascii_lowercase()))
    }
}

/// A cgroup (v2) path: matches it and every cgroup below it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CgroupPrefix(String);

impl CgroupPrefix {
    pub(crate) fn matches(&self, path: &str) -> bool {
        let prefix = self.0.trim_end_matches('/');
        match path.strip_prefix(prefix) {
            Some(rest) => rest.is_empty() || rest.starts_with('/') || prefix.is_empty(),
            None => false,
        }
    }
}

impl fmt::Display for CgroupPrefix {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.0)
    }
}
text_serialize!(CgroupPrefix);

impl Scalar for CgroupPrefix {
    const EXPECTED: &'static str = "a cgroup path starting with /";
    fn from_text(s: &str) -> Result<Self, ValueError> {
        if !s.starts_with('/') {
            return Err(ValueError::NotACgroup(s.into()));
        }
        Ok(Self(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_and_ranges() {
        assert_eq!(
            PortRange::from_text("8000-8100").unwrap(),
            PortRange {
                low: 8000,
                high: 8100
            }
        );
        assert!(PortRange::from_text("9-1")
            .unwrap_err()
            .to_string()
            .contains("ends before"));
        assert!(PortRange::from_text("70000").is_err());
        assert!(PortRange::from_int(-1).is_err());
        assert!(PortRange::from_int(53).unwrap().contains(53));
    }

    #[test]
    fn cgroup_prefix_is_per_component() {
        let p = CgroupPrefix::from_text("/system.slice").unwrap();
        assert!(p.matches("/system.slice"));
        assert!(p.matches("/system.slice/ssh.service"));
        assert!(!p.matches("/system.slice2/x"));
        assert!(CgroupPrefix::from_text("/").unwrap().matches("/any/thing"));
        assert!(CgroupPrefix::from_text("system.slice").is_err());
    }

    #[test]
    fn container_ids_are_hex_prefixes() {
        let c = ContainerId::from_text("3F4E").unwrap();
        assert!(c.matches("3f4e1a2b"));
        assert!(!c.matches("aa3f4e"));
        assert!(ContainerId::from_text("xyz").is_err());
    }

    #[test]
    fn cidr_error_names_the_text() {
        let e = Network::from_text("10.0.0/8").unwrap_err().to_string();
        assert!(e.starts_with("\"10.0.0/8\" is not a CIDR"), "{e}");
    }
}
