//! Who the flow talks to and in what: parsers of the first payload bytes of a flow (untrusted
//! input: every parser is bounds-checked, never panics, and is fuzzed under fuzz/) and the
//! application protocol they reveal.
pub(crate) mod detect;
pub mod dns;
pub(crate) mod text;
pub mod tls;

pub use detect::detect;
