//! The configuration file (TOML): every option, its default, and validation. Without a file
//! (`--config`, else /etc/flow-agent/config.toml when it exists: `default_file`) the built-in
//! defaults apply (native events on stdout). docs/configuration.md documents
//! every option; `flow-agent config --default` prints them all with their defaults.
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{
    enrich::EnrichmentConfig as Enrichment, event::HostInfo, filter::FilterConfig,
    flows::FlowTableConfig, health::HealthConfig, ratelimit::RateLimitConfig,
    sink::subscribe::LiveConfig, sink::OutputConfig,
};

mod default_file;
mod defaults;
mod error;
pub(crate) mod locate;
pub(crate) mod overrides;
mod permissions;
pub(crate) mod redact;
pub(crate) mod sections;
mod validate;

pub use default_file::{
    choose as choose_file, default_path, ConfigSource, DEFAULT_CONFIG_ENV, DEFAULT_CONFIG_FILE,
};
pub use defaults::default_toml;
pub use error::{ConfigError, Issue, Problem};
pub use overrides::{parse_output_spec, OutputSpecError, Overrides};
pub use sections::{AgentConfig, CaptureSettings, LogLevel, UnknownLogLevel};
pub(crate) use sections::{EnrichConfig, FlowsConfig, LogTarget};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub agent: AgentConfig,
    pub(crate) flows: FlowsConfig,
    pub(crate) enrich: EnrichConfig,
    pub capture: CaptureSettings,
    pub(crate) filter: FilterConfig,
    pub(crate) health: HealthConfig,
    pub(crate) rate_limit: RateLimitConfig,
    pub(crate) outputs: Vec<OutputConfig>,
    pub(crate) live: LiveConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            agent: AgentConfig::default(),
            flows: FlowsConfig::default(),
            enrich: EnrichConfig::default(),
            capture: CaptureSettings::default(),
            filter: FilterConfig::default(),
            health: HealthConfig::default(),
            rate_limit: RateLimitConfig::default(),
            outputs: vec![OutputConfig::stdout()],
            live: LiveConfig::default(),
        }
    }
}

impl Config {
    /// Problems serde cannot see (ranges, conflicts, missing directories), by key path.
    pub fn check(&self) -> Vec<Issue> {
        validate::check(self)
    }

    /// The flow table's settings: `[flows]` and `[enrich]`, with this host's facts.
    pub fn flow_table_config(&self) -> FlowTableConfig {
        FlowTableConfig {
            update_interval: self.flows.update_interval.duration(),
            udp_idle_timeout: self.flows.udp_idle_timeout.duration(),
            accept_wait: self.flows.accept_wait.duration(),
            community_id_seed: self.enrich.community_id_seed,
        }
    }

    /// `[enrich]` for the enrichment stage, with the facts of this host.
    pub fn enrich_config(&self, host: std::sync::Arc<HostInfo>) -> Enrichment {
        Enrichment {
            host,
            local_networks: self.enrich.local_networks.iter().map(|n| n.cidr).collect(),
            content_bytes: self.enrich.content_bytes as usize,
            dns_events: self.enrich.dns_events,
            process_events: self.enrich.process_events,
            ancestry_depth: self.enrich.ancestry_depth as usize,
            hash_max_bytes: self.enrich.hash_max_bytes,
            ja4s: self.enrich.ja4s,
        }
    }

    /// Credentials an HTTP output would send in clear text, by output index.
    pub fn cleartext_warnings(&self) -> impl Iterator<Item = (usize, String)> + '_ {
        self.outputs.iter().enumerate().filter_map(|(i, o)| {
            let warning = o.http.as_ref()?.cleartext_warning()?;
            Some((i, warning))
        })
    }

    /// The configuration as TOML, secrets included: it parses back to the same configuration.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("the configuration serializes to TOML")
    }

    /// The effective configuration as `flow-agent config` prints it: [`Config::to_toml`] with
    /// passwords, HTTP header values and secret-looking URL query values as `"<redacted>"`.
    pub fn to_toml_redacted(&self) -> String {
        redact::redact(&self.to_toml())
    }
}

/// Reads, checks and parses a configuration file. The file must be safe (see
/// `permissions`): owned by root or the agent's user and writable by no one else.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    permissions::check(path)?;
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, path)
}

/// Parses and validates configuration text; `file` names it in errors.
pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
    let index = locate::SpanIndex::new(text);
    let invalid = |problems| ConfigError::Invalid {
        file: file.to_path_buf(),
        problems,
    };
    let config: Config = toml::from_str(text)
        .map_err(|e| invalid(vec![Problem::from_toml(text, index.as_ref(), &e)]))?;
    let issues = config.check();
    if !issues.is_empty() {
        return Err(invalid(
            issues
                .into_iter()
                .map(|i| Problem::from_issue(index.as_ref(), i))
                .collect(),
        ));
    }
    Ok(config)
}

#[cfg(test)]
mod tests;
