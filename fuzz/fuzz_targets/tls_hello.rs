//! The first record of each side of a TLS connection: hellos and their fingerprints.
#![no_main]
use flow_agent::proto::tls;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = tls::parse_client_hello(data) {
        let _ = (h.ja3(), h.ja4(), h.max_version());
    }
    if let Ok(h) = tls::parse_server_hello(data) {
        let _ = (h.ja3s(), h.ja4s(), tls::version_name(h.version));
    }
});
