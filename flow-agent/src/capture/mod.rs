//! Capture stage: load and attach the kernel programs, read their records.
pub(crate) mod drain;
pub(crate) mod loader;
pub(crate) mod object;
pub mod records;
pub mod sock_diag;

pub use loader::CaptureConfig;
pub(crate) use loader::{Capture, CaptureError, Loader};
pub use records::Record;
