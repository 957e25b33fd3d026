//! The configuration file (TOML): every option, its default, and validation.
use serde::{Deserialize, Serialize};

use crate::{filter::FilterConfig, health::HealthConfig, sink::OutputConfig};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub filter: FilterConfig,
    pub health: HealthConfig,
    pub outputs: Vec<OutputConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            filter: FilterConfig::default(),
            health: HealthConfig::default(),
            outputs: vec![OutputConfig::stdout()],
        }
    }
}
