//! Ring buffer records: whatever bytes arrive, decoding checks kinds and sizes.
#![no_main]
use flow_agent::capture::records::{exec_path, Record};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Record::Exec(e)) = Record::decode(data) {
        let _ = exec_path(&e);
    }
});
