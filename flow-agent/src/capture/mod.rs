//! Capture stage: load and attach the kernel programs, read their records.
pub mod drain;
pub mod loader;
pub mod object;
pub mod records;
pub mod sock_diag;

pub use loader::{Capture, CaptureConfig, CaptureError};
pub use records::Record;
