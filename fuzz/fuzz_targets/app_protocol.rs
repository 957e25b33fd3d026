//! Application protocol detection on both directions' first bytes.
#![no_main]
use flow_agent::proto::detect;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    // The first byte picks the transport, the split point between the two directions and the
    // server's port among a few interesting ones.
    let split = (usize::from(flags) * rest.len()) / 256;
    let (orig, resp) = rest.split_at(split);
    let port = [53, 80, 443, 22, 25, 21, 110, 143, 8080, 40000][usize::from(flags % 10)];
    let _ = detect(flags & 0x80 != 0, orig, resp, port);
});
