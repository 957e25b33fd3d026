//! http: NDJSON batches or the Elasticsearch `_bulk` API.
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Sink, SinkError, SinkStats};
use crate::encode::Format;

/// `[outputs.http]`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    pub url: String,
}

pub fn open(
    config: &HttpConfig,
    _format: Format,
    _stats: Arc<SinkStats>,
) -> Result<Box<dyn Sink>, SinkError> {
    Err(SinkError::Config(format!(
        "http sink ({}) is not available in this build yet",
        config.url
    )))
}
