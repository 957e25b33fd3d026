//! file: JSON lines with rotation, for a tailing shipper.
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Sink, SinkError, SinkStats};

/// `[outputs.file]`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub path: std::path::PathBuf,
}

pub fn open(config: &FileConfig, _stats: Arc<SinkStats>) -> Result<Box<dyn Sink>, SinkError> {
    Err(SinkError::Config(format!(
        "file sink ({}) is not available in this build yet",
        config.path.display()
    )))
}
