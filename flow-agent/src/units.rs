//! Value types of the configuration that the stages it configures keep too. A leaf module:
//! config imports every stage's section, so a stage that took such a type from config would
//! import config back.
use std::{fmt, time::Duration};

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// A duration in seconds: an integer or a decimal number (`0.5`), never negative.
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
pub struct Seconds(pub f64);

impl Seconds {
    pub(crate) fn duration(self) -> Duration {
        Duration::from_secs_f64(self.0)
    }
}

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{} s", self.0)
    }
}

impl Serialize for Seconds {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0.fract() == 0.0 && self.0 < u32::MAX as f64 {
            s.serialize_u64(self.0 as u64)
        } else {
            s.serialize_f64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Seconds;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number of seconds (e.g. 60 or 0.5)")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Seconds, E> {
                self.visit_f64(v as f64)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Seconds, E> {
                self.visit_f64(v as f64)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Seconds, E> {
                // Up to a year: anything longer is a mistake (and must fit a Duration).
                if !(0.0..=31_536_000.0).contains(&v) {
                    return Err(E::custom(format!(
                        "{v} is not a duration (expected a number of seconds from 0 to 31536000)"
                    )));
                }
                Ok(Seconds(v))
            }
        }
        d.deserialize_any(V)
    }
}
