//! What a subscriber and the agent say on the socket. The client sends one JSON line (a
//! [`Request`]); the agent answers `ok` or `error: WHY` on one line, then one record a line.
//! A subscriber dropped for falling behind gets `#dropped: WHY` as its last line (records
//! never start with `#`).
use serde::{Deserialize, Serialize};

use crate::encode::{brief::BriefEncoder, Encoder, Format};

/// The agent's answer to a good request.
pub const OK: &str = "ok";
/// Starts the answer to a bad request.
pub const ERROR_PREFIX: &str = "error: ";
/// Starts the last line sent to a subscriber dropped for being slow.
pub const DROPPED_PREFIX: &str = "#dropped: ";
/// The longest request line the agent reads.
pub(crate) const MAX_REQUEST: u64 = 64 << 10;

/// A subscription: the format of the records and a filter in the rule language of `[filter]`
/// (each rule a table of conditions, as JSON).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Request {
    #[serde(default)]
    pub format: Format,
    #[serde(default)]
    pub include: Vec<serde_json::Value>,
    #[serde(default)]
    pub exclude: Vec<serde_json::Value>,
    /// Brief records (`flow-agent top`): flow events only, with only the fields a live view
    /// shows (`encode::brief`), under their native names; needs `format` native.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub brief: bool,
}

/// How a subscriber's records are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Encoding {
    Format(Format),
    Brief,
}

impl Encoding {
    pub(crate) fn encoder(self) -> Box<dyn Encoder> {
        match self {
            Encoding::Format(f) => f.encoder(),
            Encoding::Brief => Box::new(BriefEncoder),
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Encoding::Format(f) => f.name(),
            Encoding::Brief => "brief",
        }
    }
}

impl Request {
    /// How its records are written; brief records exist only in the native schema.
    pub(crate) fn encoding(&self) -> Result<Encoding, RuleError> {
        match (self.brief, self.format) {
            (false, f) => Ok(Encoding::Format(f)),
            (true, Format::Native) => Ok(Encoding::Brief),
            (true, f) => Err(RuleError::BriefFormat(f.name())),
        }
    }

    /// The filter the rules make; an error names the rule that is wrong.
    pub(crate) fn filter(&self) -> Result<crate::filter::FilterConfig, RuleError> {
        let value = serde_json::json!({ "include": self.include, "exclude": self.exclude });
        serde_json::from_value(value).map_err(RuleError::Filter)
    }

    /// Adds an include (or exclude) rule written as the inside of a TOML inline table, e.g.
    /// `remote_port = 443, process_name = "curl"`; an error names the rule and the problem.
    pub fn add_rule(&mut self, rule: &str, exclude: bool) -> Result<(), RuleError> {
        let named = |source| RuleError::Named {
            rule: rule.into(),
            source: Box::new(source),
        };
        let table: toml::Table = toml::from_str(&format!("rule = {{ {rule} }}"))
            .map_err(|e| named(RuleError::Toml(e)))?;
        let value = serde_json::to_value(&table["rule"]).map_err(|e| named(RuleError::Json(e)))?;
        let mut next = self.clone();
        if exclude {
            next.exclude.push(value);
        } else {
            next.include.push(value);
        }
        next.filter().map_err(named)?;
        *self = next;
        Ok(())
    }
}

/// Why a subscription's filter rules are refused.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("bad filter rule: {0}")]
    Filter(#[source] serde_json::Error),
    #[error("{}", .0.message())]
    Toml(#[source] toml::de::Error),
    #[error("{0}")]
    Json(#[source] serde_json::Error),
    #[error("brief records are native: not {0}")]
    BriefFormat(&'static str),
    /// One rule given as text, and what is wrong with it.
    #[error("filter rule {rule:?}: {source}")]
    Named {
        rule: String,
        #[source]
        source: Box<RuleError>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_are_the_filter_language() {
        let mut r = Request::default();
        r.add_rule(
            "remote_port = [443, \"8000-8100\"], transport = \"tcp\"",
            false,
        )
        .unwrap();
        r.add_rule("process_name = \"chronyd\"", true).unwrap();
        let f = r.filter().unwrap();
        assert_eq!((f.include.len(), f.exclude.len()), (1, 1));
        let err = r
            .add_rule("remote_prot = 1", false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("remote_prot"), "{err}");
        let err = r.add_rule("remote_port = ", false).unwrap_err().to_string();
        assert!(err.contains("remote_port = "), "{err}");
        assert_eq!(r.include.len(), 1, "a bad rule is not kept");
        let json = serde_json::to_string(&r).unwrap();
        assert!(!json.contains("brief"), "{json}");
        assert_eq!(serde_json::from_str::<Request>(&json).unwrap(), r);
        assert_eq!(r.encoding().unwrap(), Encoding::Format(Format::Native));
        r.brief = true;
        assert_eq!(r.encoding().unwrap(), Encoding::Brief);
        r.format = Format::Ecs;
        let err = r.encoding().unwrap_err().to_string();
        assert_eq!(err, "brief records are native: not ecs");
    }
}
