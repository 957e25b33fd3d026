//! syslog: RFC 5424 messages over a unix socket, UDP, TCP or TCP with TLS.
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Sink, SinkError, SinkStats};
use crate::encode::Format;

/// `[outputs.syslog]`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SyslogConfig {
    pub address: String,
}

pub fn open(
    config: &SyslogConfig,
    _format: Format,
    _stats: Arc<SinkStats>,
) -> Result<Box<dyn Sink>, SinkError> {
    Err(SinkError::Config(format!(
        "syslog sink ({}) is not available in this build yet",
        config.address
    )))
}
