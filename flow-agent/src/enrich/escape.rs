//! Bytes the kernel gives (executable paths, arguments, task names, cgroup names) as text,
//! without losing any. Linux names are bytes, not UTF-8, and whoever starts a process chooses
//! them: an attacker can hide a name behind bytes that a lossy decoding would blur.
//!
//! The rule (docs/events.md, "Bytes that are not UTF-8"): valid UTF-8 is written as it is,
//! unless it starts with `$'`; anything else is written in bash's ANSI-C quoting, `$'...'`,
//! with `\xHH` for each byte that is not part of valid UTF-8, `\\` and `\'` for backslash and
//! quote, `\n`, `\t`, `\r` or `\xHH` for control characters. A value starting with `$'` is
//! therefore always quoted, so the two forms cannot be confused, and bash (`printf '%s'
//! $'...'`) gives the original bytes back.

/// The text of `bytes` under the rule above.
pub fn text_of(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) if !s.starts_with("$'") => s.to_string(),
        _ => {
            let mut out = String::with_capacity(bytes.len() + 8);
            ansi_c_quote(bytes, &mut out);
            out
        }
    }
}

/// Appends `$'...'` quoting `bytes` to `out`.
pub(crate) fn ansi_c_quote(bytes: &[u8], out: &mut String) {
    out.push_str("$'");
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\'' => out.push_str("\\'"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if c.is_ascii_control() => hex(c as u8, out),
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            hex(*b, out);
        }
    }
    out.push('\'');
}

fn hex(b: u8, out: &mut String) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.push_str("\\x");
    out.push(DIGITS[usize::from(b >> 4)] as char);
    out.push(DIGITS[usize::from(b & 15)] as char);
}

/// The bytes [`text_of`] was given, back from its text; None for text it cannot produce.
pub fn bytes_of(text: &str) -> Option<Vec<u8>> {
    let Some(quoted) = text.strip_prefix("$'") else {
        return Some(text.as_bytes().to_vec());
    };
    let body = quoted.strip_suffix('\'')?;
    let mut out = Vec::with_capacity(body.len());
    let mut rest = body.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        rest = tail;
        match b {
            b'\'' => return None,
            b'\\' => {
                let (&e, tail) = rest.split_first()?;
                rest = tail;
                match e {
                    b'\\' | b'\'' => out.push(e),
                    b'n' => out.push(b'\n'),
                    b't' => out.push(b'\t'),
                    b'r' => out.push(b'\r'),
                    b'x' => {
                        let digits = rest.get(..2)?;
                        let s = std::str::from_utf8(digits).ok()?;
                        out.push(u8::from_str_radix(s, 16).ok()?);
                        rest = &rest[2..];
                    }
                    _ => return None,
                }
            }
            b => out.push(b),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_stays_as_it_is() {
        for s in ["/usr/bin/curl", "é ☃ a\\b 'q' $x", "", "a\nb", "$"] {
            assert_eq!(text_of(s.as_bytes()), s);
        }
    }

    #[test]
    fn other_bytes_are_quoted_losslessly() {
        assert_eq!(text_of(b"/tmp/\xff\xfeevil"), "$'/tmp/\\xff\\xfeevil'");
        assert_eq!(text_of(b"a\\b'c\n\x01\xc3"), "$'a\\\\b\\'c\\n\\x01\\xc3'");
        // Valid characters stay readable inside the quotes.
        assert_eq!(text_of("é\u{80}\u{ff}".as_bytes()), "é\u{80}\u{ff}");
        assert_eq!(text_of(b"\xc3\xa9\xff"), "$'é\\xff'");
        // A valid value that looks quoted is quoted itself.
        assert_eq!(text_of(b"$'x'"), "$'$\\'x\\''");
    }

    #[test]
    fn every_text_decodes_to_its_bytes() {
        let cases: &[&[u8]] = &[
            b"",
            b"/usr/bin/curl",
            b"\xff",
            b"$'",
            b"$'\xff'",
            b"a\\x41",
            b"\\xff\xff",
            b"\x00\x7f\x1b[31m",
            "ünïcödé\u{202e}".as_bytes(),
        ];
        for b in cases {
            let t = text_of(b);
            assert_eq!(bytes_of(&t).as_deref(), Some(*b), "{t:?}");
        }
    }

    #[test]
    fn bash_reads_the_quoted_form_back() {
        let Ok(bash) = which_bash() else {
            return;
        };
        let raw: &[u8] = b"/tmp/\xff\xfe x'y\\z\n\x01\xc3\xa9";
        let t = text_of(raw);
        let out = std::process::Command::new(bash)
            .arg("-c")
            .arg(format!("printf '%s' {t}"))
            .output()
            .unwrap();
        assert_eq!(out.stdout, raw);
    }

    fn which_bash() -> Result<&'static str, ()> {
        ["/bin/bash", "/usr/bin/bash"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .ok_or(())
    }
}
