//! Bytes that are not UTF-8 as text: whatever the bytes, the text decodes back to them
//! exactly, and a command line of such arguments is one line of words (no loss, no mixing).
#![no_main]
use flow_agent::enrich::{
    command_line::quote_args,
    escape::{bytes_of, text_of},
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = text_of(data);
    assert_eq!(bytes_of(&text).as_deref(), Some(data), "{text:?}");
    // Printable: no control character reaches a quoted value.
    if text.starts_with("$'") {
        assert!(!text.chars().any(|c| c.is_ascii_control()), "{text:?}");
    }
    let args: Vec<&[u8]> = data.split(|b| *b == 0).collect();
    let line = quote_args(&args);
    assert!(line.len() >= args.len().saturating_sub(1));
});
