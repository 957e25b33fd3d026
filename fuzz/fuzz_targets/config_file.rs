//! Configuration files and `--output` specs: any text is either a configuration or a clear
//! error (with its line and column), never a panic; a configuration that parses prints back to
//! TOML that parses to the same configuration.
#![no_main]
use std::path::Path;

use flow_agent::config::{self, parse_output_spec};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match config::parse(&text, Path::new("fuzz.toml")) {
        Ok(cfg) => {
            let again = config::parse(&cfg.to_toml(), Path::new("printed.toml"))
                .expect("a printed configuration parses");
            assert_eq!(
                again, cfg,
                "printing and parsing back changed the configuration"
            );
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    if let Some(first) = text.lines().next() {
        let _ = parse_output_spec(first);
    }
});
