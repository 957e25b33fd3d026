//! The first records of each side of a TLS connection: hellos (whole or cut) and their
//! fingerprints. A cut hello has none.
#![no_main]
use flow_agent::proto::tls;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = tls::parse_client_hello(data) {
        let (ja3, ja4) = (h.ja3(), h.ja4());
        assert_eq!(ja3.is_none(), h.truncated);
        assert_eq!(ja4.is_none(), h.truncated);
        let _ = h.max_version().map(tls::version_name);
    }
    if let Ok(h) = tls::parse_server_hello(data) {
        assert_eq!(h.ja3s().is_none(), h.truncated);
        assert_eq!(h.ja4s().is_none(), h.truncated);
        let _ = h.version.map(tls::version_name);
    }
});
