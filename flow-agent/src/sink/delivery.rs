//! Delivery for network sinks: a bounded in-memory queue, a disk buffer behind it, reconnects
//! with back-off, at-least-once and in order. A [`Transport`] only knows how to reach one kind
//! of destination; everything about not losing records lives here.
use std::{future::Future, pin::Pin, sync::Arc};

use serde::{Deserialize, Serialize};

use super::{Sink, SinkError, SinkStats};

/// `[outputs.<sink>.delivery]`: queue and buffer sizes shared by every network sink.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {}

/// Why a batch was not taken.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The destination is unreachable or the connection broke: reconnect after a back-off and
    /// send the same records again.
    #[error("{0}")]
    Retry(String),
    /// The destination refused these records for good (e.g. HTTP 400): `count` of them are
    /// dropped and counted, the rest of the batch was taken.
    #[error("{count} records rejected: {reason}")]
    Rejected { count: usize, reason: String },
}

/// A future returned by [`Transport::send`].
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<(), TransportError>> + Send + 'a>>;

/// One kind of destination (syslog over TCP, HTTP, ...). Connects lazily inside `send` and
/// drops its connection on error, so that the next `send` reconnects.
pub trait Transport: Send + 'static {
    /// Sends these records (encoded, without framing) in order; Ok when all were taken.
    fn send<'a>(&'a mut self, records: &'a [Vec<u8>]) -> SendFuture<'a>;
    /// Most records worth passing to one `send`.
    fn max_batch(&self) -> usize;
    /// For logs: where this transport sends.
    fn describe(&self) -> String;
}

/// Starts the delivery worker of a transport and returns the sink that feeds it.
pub fn spawn(
    transport: Box<dyn Transport>,
    config: &DeliveryConfig,
    stats: Arc<SinkStats>,
) -> Result<Box<dyn Sink>, SinkError> {
    let _ = (config, stats);
    Err(SinkError::Config(format!(
        "delivery to {} is not available in this build yet",
        transport.describe()
    )))
}
