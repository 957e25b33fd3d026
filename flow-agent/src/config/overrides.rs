//! Command-line options that override the file: `--log-level`, `--output` (repeatable: the
//! outputs given replace the file's), `run --update-interval` and `run --udp-idle-timeout`.
//! They apply again after every SIGHUP reload.
use crate::{encode::Format, sink::OutputConfig};

use super::{Config, LogLevel};
use crate::units::Seconds;

#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub log_level: Option<LogLevel>,
    pub outputs: Vec<OutputConfig>,
    pub update_interval: Option<Seconds>,
    pub udp_idle_timeout: Option<Seconds>,
    pub tcp_detail: Option<bool>,
}

impl Overrides {
    pub fn apply(&self, cfg: &mut Config) {
        if let Some(l) = self.log_level {
            cfg.agent.log_level = l;
        }
        if !self.outputs.is_empty() {
            cfg.outputs = self.outputs.clone();
        }
        if let Some(on) = self.tcp_detail {
            cfg.capture.tcp_detail = on;
        }
        if let Some(s) = self.update_interval {
            cfg.flows.update_interval = s;
        }
        if let Some(s) = self.udp_idle_timeout {
            cfg.flows.udp_idle_timeout = s;
        }
    }
}

/// `--output SINK[:TARGET][:FORMAT]`: `stdout`, `stdout:ecs`, `file:/var/log/flows.json`,
/// `file:/var/log/flows.json:ocsf`, `syslog:ADDRESS[:FORMAT]`, `http:URL[:FORMAT]`. The format
/// is the last `:` field when it names one, so targets may contain colons
/// (`syslog:127.0.0.1:514:ecs`).
pub fn parse_output_spec(spec: &str) -> Result<OutputConfig, OutputSpecError> {
    let (kind, rest) = spec.split_once(':').unwrap_or((spec, ""));
    let mut sink = toml::Table::new();
    let format = if kind == "stdout" {
        match rest {
            "" => Format::Native,
            f => format_named(f).ok_or_else(|| OutputSpecError::UnknownFormat(f.into()))?,
        }
    } else {
        let key = match kind {
            "file" => "path",
            "syslog" => "address",
            "http" => "url",
            _ => return Err(OutputSpecError::UnknownSink(kind.into())),
        };
        let (target, format) = match rest.rsplit_once(':') {
            Some((t, f)) if format_named(f).is_some() => (t, format_named(f)),
            _ => (rest, None),
        };
        if target.is_empty() {
            return Err(OutputSpecError::NoTarget {
                kind: kind.into(),
                key: key.to_uppercase(),
            });
        }
        sink.insert(key.into(), toml::Value::String(target.into()));
        format.unwrap_or_default()
    };
    let mut table = toml::Table::new();
    table.insert("format".into(), toml::Value::String(format.name().into()));
    table.insert(kind.into(), toml::Value::Table(sink));
    // Through serde, so every other option of the sink keeps its default.
    table
        .try_into::<OutputConfig>()
        .map_err(|source| OutputSpecError::Options {
            kind: kind.into(),
            source,
        })
}

/// Why an `--output` spec is not one.
#[derive(Debug, thiserror::Error)]
pub enum OutputSpecError {
    #[error("{0:?} is not a format (expected stdout or stdout:FORMAT, FORMAT one of {names})", names = format_names())]
    UnknownFormat(String),
    #[error("unknown sink {0:?} (expected stdout[:FORMAT], file:PATH[:FORMAT], syslog:ADDRESS[:FORMAT] or http:URL[:FORMAT])")]
    UnknownSink(String),
    #[error("{kind} needs a target (expected {kind}:{key}[:FORMAT])")]
    NoTarget { kind: String, key: String },
    #[error("{kind} output: {}", .source.message().trim_end())]
    Options {
        kind: String,
        #[source]
        source: toml::de::Error,
    },
}

fn format_named(s: &str) -> Option<Format> {
    Format::ALL.into_iter().find(|f| f.name() == s)
}

fn format_names() -> String {
    Format::ALL.map(|f| f.name()).join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_specs() {
        let o = parse_output_spec("stdout").unwrap();
        assert_eq!(o, OutputConfig::stdout());
        let o = parse_output_spec("stdout:ecs").unwrap();
        assert_eq!((o.kind().unwrap(), o.format), ("stdout", Format::Ecs));
        let o = parse_output_spec("file:/var/log/flows.json:ocsf").unwrap();
        assert_eq!(o.file.unwrap().path.to_str(), Some("/var/log/flows.json"));
        assert_eq!(o.format, Format::Ocsf);
        let o = parse_output_spec("file:/var/log/a:b").unwrap();
        assert_eq!(o.file.unwrap().path.to_str(), Some("/var/log/a:b"));
        assert_eq!(o.format, Format::Native);
        let o = parse_output_spec("syslog:127.0.0.1:514:ecs").unwrap();
        assert_eq!(o.syslog.unwrap().address, "127.0.0.1:514");
        assert_eq!(o.format, Format::Ecs);
        let o = parse_output_spec("http:http://127.0.0.1:9200/_bulk").unwrap();
        assert_eq!(o.http.unwrap().url, "http://127.0.0.1:9200/_bulk");
        assert!(parse_output_spec("stdout:xml")
            .unwrap_err()
            .to_string()
            .contains("not a format"));
        assert!(parse_output_spec("kafka:x")
            .unwrap_err()
            .to_string()
            .contains("unknown sink"));
        assert!(parse_output_spec("file")
            .unwrap_err()
            .to_string()
            .contains("needs a target"));
    }

    #[test]
    fn overrides_replace_outputs_and_timings() {
        let mut cfg = Config::default();
        Overrides {
            log_level: Some(LogLevel::Debug),
            outputs: vec![parse_output_spec("stdout:zeek").unwrap()],
            update_interval: Some(Seconds(2.0)),
            udp_idle_timeout: None,
            tcp_detail: Some(false),
        }
        .apply(&mut cfg);
        assert_eq!(cfg.agent.log_level, LogLevel::Debug);
        assert!(!cfg.capture.tcp_detail);
        assert_eq!(cfg.outputs[0].format, Format::Zeek);
        assert_eq!(cfg.flows.update_interval, Seconds(2.0));
        assert_eq!(cfg.flows.udp_idle_timeout, Seconds(60.0));
    }
}
