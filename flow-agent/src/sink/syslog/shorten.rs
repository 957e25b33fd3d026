//! `oversize = "truncate"`: a record too long for its message is made to fit by shortening
//! its longest string values, never by cutting the record. It stays one valid JSON document
//! (or one well-formed XML element) with every field it had, each shortened value ends with
//! `…`, and the record says it was shortened: `record_truncated: true` at the top level
//! (native, zeek), in `flow_agent` (ecs) or in `unmapped` (ocsf); a
//! `<Data Name="RecordTruncated">true</Data>` element at the end of `EventData` (sysmon).
//!
//! The values are shortened "water-filling": every value longer than some length is cut to
//! it, the length chosen as large as the limit allows, so the longest values (a command line)
//! lose the most and short ones (addresses, times) nothing unless nothing else helps.
use crate::encode::Format;

/// Ends every shortened value (3 bytes of UTF-8).
const ELLIPSIS: &str = "…";
const JSON_MARKER: &str = "\"record_truncated\":true";
const XML_MARKER: &str = "<Data Name=\"RecordTruncated\">true</Data>";
const XML_MARKER_PARENT: &[u8] = b"</EventData>";

/// A string value (JSON) or character data (XML) that may be shortened: the byte range of
/// its content, escapes included.
#[derive(Clone, Copy, Debug)]
struct Span {
    start: usize,
    end: usize,
}

impl Span {
    fn len(self) -> usize {
        self.end - self.start
    }
}

/// The length of the unit (character, escape) starting a slice.
type Unit = fn(&[u8]) -> usize;

/// Where the record is marked: bytes inserted at a position.
struct Insert {
    at: usize,
    text: String,
}

/// The record, shortened to at most `max` bytes; None when it is not a record of its format
/// (not one JSON object, no `EventData` element) or cannot fit even with every value cut to
/// `…`.
pub(crate) fn shorten(record: &[u8], format: Format, max: usize) -> Option<Vec<u8>> {
    let (spans, insert, units): (Vec<Span>, Insert, Unit) = if format.is_json() {
        let parent = match format {
            Format::Ecs => Some("flow_agent"),
            Format::Ocsf => Some("unmapped"),
            _ => None,
        };
        let (spans, insert) = scan_json(record, parent)?;
        (spans, insert, json_unit)
    } else {
        let (spans, insert) = scan_xml(record)?;
        (spans, insert, xml_unit)
    };
    let fixed = record.len() + insert.text.len();
    // New length of every span if those longer than `cap` bytes are cut to at most `cap`.
    let new_len = |span: Span, cap: usize| -> usize {
        if span.len() <= cap {
            span.len()
        } else {
            prefix(&record[span.start..span.end], cap - ELLIPSIS.len(), units) + ELLIPSIS.len()
        }
    };
    let size = |cap: usize| -> usize {
        fixed
            - spans
                .iter()
                .map(|s| s.len() - new_len(*s, cap))
                .sum::<usize>()
    };
    let longest = spans.iter().map(|s| s.len()).max().unwrap_or(0);
    let shortest_cap = ELLIPSIS.len();
    if size(shortest_cap) > max {
        return None;
    }
    // The largest cap that fits: size grows with the cap.
    let (mut fits, mut too_big) = (shortest_cap, longest.max(shortest_cap) + 1);
    while too_big - fits > 1 {
        let mid = fits + (too_big - fits) / 2;
        if size(mid) <= max {
            fits = mid;
        } else {
            too_big = mid;
        }
    }
    let mut out = Vec::with_capacity(size(fits));
    let mut copied = 0;
    let mut inserted = false;
    for span in &spans {
        if !inserted && insert.at <= span.start {
            out.extend_from_slice(&record[copied..insert.at]);
            out.extend_from_slice(insert.text.as_bytes());
            copied = insert.at;
            inserted = true;
        }
        if span.len() <= fits {
            continue;
        }
        let content = &record[span.start..span.end];
        let keep = prefix(content, fits - ELLIPSIS.len(), units);
        out.extend_from_slice(&record[copied..span.start]);
        out.extend_from_slice(&content[..keep]);
        out.extend_from_slice(ELLIPSIS.as_bytes());
        copied = span.end;
    }
    if !inserted {
        out.extend_from_slice(&record[copied..insert.at]);
        out.extend_from_slice(insert.text.as_bytes());
        copied = insert.at;
    }
    out.extend_from_slice(&record[copied..]);
    debug_assert!(out.len() <= max);
    Some(out)
}

/// The longest prefix of `content` of at most `max` bytes that ends between two units
/// (characters, escape sequences).
fn prefix(content: &[u8], max: usize, unit: Unit) -> usize {
    let mut at = 0;
    while at < content.len() {
        let n = unit(&content[at..]);
        if at + n > max {
            break;
        }
        at += n;
    }
    at
}

/// Bytes of one UTF-8 character starting at `b[0]` (1 for a stray byte).
fn utf8_len(b: &[u8]) -> usize {
    let n = match b[0] {
        0xF0..=0xF7 => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    };
    n.min(b.len())
}

/// One unit of a JSON string's content: a character, or an escape sequence (a surrogate pair
/// `\uD83D\uDE00` is one).
fn json_unit(b: &[u8]) -> usize {
    if b[0] != b'\\' {
        return utf8_len(b);
    }
    if b.get(1) != Some(&b'u') {
        return 2.min(b.len());
    }
    let high = |b: &[u8]| {
        std::str::from_utf8(b.get(2..6).unwrap_or_default())
            .ok()
            .and_then(|h| u16::from_str_radix(h, 16).ok())
    };
    match high(b) {
        Some(0xD800..=0xDBFF) if b.get(6) == Some(&b'\\') && b.get(7) == Some(&b'u') => {
            12.min(b.len())
        }
        _ => 6.min(b.len()),
    }
}

/// One unit of XML character data: a character, or an entity or character reference.
fn xml_unit(b: &[u8]) -> usize {
    if b[0] == b'&' {
        if let Some(end) = b.iter().position(|c| *c == b';') {
            return end + 1;
        }
    }
    utf8_len(b)
}

fn skip_ws(b: &[u8], mut at: usize) -> usize {
    while at < b.len() && matches!(b[at], b' ' | b'\t' | b'\n' | b'\r') {
        at += 1;
    }
    at
}

/// The string values of one JSON object, and where its marker goes: at the end of the
/// top-level object `parent` when there is one (added as `"parent":{...}` when absent), else
/// at the end of the record's object. None when `b` is not one JSON object.
fn scan_json(b: &[u8], parent: Option<&str>) -> Option<(Vec<Span>, Insert)> {
    enum Open {
        Object { empty: bool },
        Array,
    }
    let mut spans = Vec::new();
    let mut stack: Vec<Open> = Vec::new();
    // The top-level key whose value is being read, and where the parent object closes.
    let mut top_key: Option<(usize, usize)> = None;
    let mut parent_at: Option<(usize, bool)> = None;
    let mut top_end = None;
    let mut at = skip_ws(b, 0);
    if b.get(at) != Some(&b'{') {
        return None;
    }
    while at < b.len() {
        let c = b[at];
        match c {
            b'{' | b'[' => {
                if let Some(Open::Object { empty }) = stack.last_mut() {
                    *empty = false;
                }
                stack.push(if c == b'{' {
                    Open::Object { empty: true }
                } else {
                    Open::Array
                });
                at += 1;
            }
            b'}' | b']' => {
                let open = stack.pop()?;
                match (c, &open) {
                    (b'}', Open::Object { .. }) | (b']', Open::Array) => {}
                    _ => return None,
                }
                if stack.is_empty() {
                    top_end = Some(at);
                    at += 1;
                    break;
                }
                if stack.len() == 1 {
                    if let (Some((ks, ke)), Some(p), Open::Object { empty }) =
                        (top_key, parent, &open)
                    {
                        if &b[ks..ke] == p.as_bytes() && parent_at.is_none() {
                            parent_at = Some((at, *empty));
                        }
                    }
                }
                at += 1;
            }
            b'"' => {
                let start = at + 1;
                let mut i = start;
                loop {
                    match b.get(i)? {
                        b'\\' => i += 2,
                        b'"' => break,
                        _ => i += 1,
                    }
                }
                let end = i;
                at = skip_ws(b, end + 1);
                if let Some(Open::Object { empty }) = stack.last_mut() {
                    *empty = false;
                }
                if b.get(at) == Some(&b':') {
                    if stack.len() == 1 {
                        top_key = Some((start, end));
                    }
                } else {
                    spans.push(Span { start, end });
                }
            }
            b' ' | b'\t' | b'\n' | b'\r' | b',' | b':' => at += 1,
            _ => {
                // A number, true, false or null.
                if let Some(Open::Object { empty }) = stack.last_mut() {
                    *empty = false;
                }
                at += 1;
            }
        }
    }
    let top_end = top_end?;
    if skip_ws(b, at) != b.len() {
        return None;
    }
    let insert = match (parent, parent_at) {
        (Some(_), Some((at, empty))) => Insert {
            at,
            text: format!("{}{JSON_MARKER}", if empty { "" } else { "," }),
        },
        (Some(p), None) => Insert {
            at: top_end,
            text: format!(",\"{p}\":{{{JSON_MARKER}}}"),
        },
        (None, _) => Insert {
            at: top_end,
            text: format!(",{JSON_MARKER}"),
        },
    };
    Some((spans, insert))
}

/// The character data of one XML element on one line (between `>` and `<`), and where its
/// marker goes: before `</EventData>`. None without it.
fn scan_xml(b: &[u8]) -> Option<(Vec<Span>, Insert)> {
    let at = b
        .windows(XML_MARKER_PARENT.len())
        .rposition(|w| w == XML_MARKER_PARENT)?;
    let mut spans = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'>' {
            let start = i + 1;
            let end = b[start..]
                .iter()
                .position(|c| *c == b'<')
                .map_or(b.len(), |n| start + n);
            if end > start {
                spans.push(Span { start, end });
            }
            i = end;
        } else {
            i += 1;
        }
    }
    Some((
        spans,
        Insert {
            at,
            text: XML_MARKER.to_string(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn shortened(record: &Value, format: Format, max: usize) -> (Vec<u8>, Value) {
        let raw = serde_json::to_vec(record).unwrap();
        assert!(raw.len() > max, "{} bytes: not too long", raw.len());
        let out = shorten(&raw, format, max).expect("shortened");
        assert!(out.len() <= max, "{} bytes, limit {max}", out.len());
        let doc: Value = serde_json::from_slice(&out).expect("still valid JSON");
        (out, doc)
    }

    /// Dotted names of every leaf.
    fn leaves(prefix: &str, v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    leaves(&format!("{prefix}{k}."), v, out);
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    leaves(&format!("{prefix}{i}."), v, out);
                }
            }
            _ => out.push(prefix.trim_end_matches('.').to_string()),
        }
    }

    fn names(v: &Value) -> Vec<String> {
        let mut out = Vec::new();
        leaves("", v, &mut out);
        out.sort();
        out
    }

    fn flow(command_line: &str) -> Value {
        json!({
            "timestamp": "2026-11-23T13:05:50.543100Z",
            "event_action": "start",
            "flow_id": "bf79e3c67fe-5",
            "src_ip": "10.0.0.1",
            "src_port": 40000,
            "local_orig": true,
            "rtt_us": null,
            "process_args": ["python3", "-c", command_line],
            "command_line": command_line,
            "image_path": "/usr/bin/python3.12",
            "interval": {"in_bytes": 0, "out_bytes": 12},
            "hostname": "vm"
        })
    }

    #[test]
    fn a_huge_command_line_is_shortened_to_valid_json_with_every_field() {
        let big = "x".repeat(20_000);
        let original = flow(&big);
        let (out, doc) = shortened(&original, Format::Native, 2000);
        // Close to the limit: no more was cut than needed.
        assert!(out.len() > 2000 - 8, "{} bytes", out.len());
        assert_eq!(doc["record_truncated"], true);
        let mut want = names(&original);
        want.push("record_truncated".into());
        want.sort();
        assert_eq!(names(&doc), want, "every field kept, one added");
        // The two long values lost the tail, the same amount each; the rest is untouched.
        let cl = doc["command_line"].as_str().unwrap();
        assert!(cl.ends_with('…') && big.starts_with(cl.trim_end_matches('…')));
        assert_eq!(doc["process_args"][2], doc["command_line"]);
        assert!(cl.len() > 800, "{} bytes kept", cl.len());
        for k in ["timestamp", "flow_id", "src_ip", "image_path", "hostname"] {
            assert_eq!(doc[k], original[k], "{k}");
        }
        assert_eq!(doc["process_args"][0], "python3");
        assert_eq!(doc["src_port"], 40000);
        assert_eq!(doc["rtt_us"], Value::Null);
        assert_eq!(doc["interval"], original["interval"]);
    }

    #[test]
    fn escapes_and_multibyte_characters_are_never_cut_in_half() {
        // Every 2-, 3- and 4-byte character, control escapes, quotes, a surrogate pair.
        let nasty = "é\"\\\n\u{1}€😀\u{7}".repeat(400);
        let original = flow(&nasty);
        let raw = serde_json::to_vec(&original).unwrap();
        // Every limit from tight to loose: always valid JSON, the same fields, in the limit.
        for max in (600..raw.len()).step_by(97) {
            let (_, doc) = shortened(&original, Format::Native, max);
            let cl = doc["command_line"].as_str().unwrap();
            assert!(nasty.starts_with(cl.trim_end_matches('…')), "max {max}");
        }
        // A JSON writer that escapes everything beyond ASCII (\uXXXX, surrogate pairs).
        let ascii = serde_json::to_string(&original)
            .unwrap()
            .chars()
            .map(|c| {
                if c.is_ascii() {
                    c.to_string()
                } else {
                    let mut units = [0u16; 2];
                    c.encode_utf16(&mut units)
                        .iter()
                        .map(|u| format!("\\u{u:04x}"))
                        .collect()
                }
            })
            .collect::<String>();
        for max in (700..ascii.len()).step_by(101) {
            let out = shorten(ascii.as_bytes(), Format::Native, max).unwrap();
            assert!(out.len() <= max);
            let doc: Value = serde_json::from_slice(&out)
                .unwrap_or_else(|e| panic!("max {max}: {e}: {}", String::from_utf8_lossy(&out)));
            let cl = doc["command_line"].as_str().unwrap();
            assert!(nasty.starts_with(cl.trim_end_matches('…')), "max {max}");
        }
    }

    #[test]
    fn ecs_and_ocsf_mark_their_own_objects() {
        let doc = json!({
            "@timestamp": "2026-11-23T13:05:50.543100Z",
            "process": {"command_line": "y".repeat(5000), "args": ["y"]},
            "flow_agent": {"flow_id": "f-1"},
            "host": {"hostname": "vm"}
        });
        let (_, ecs) = shortened(&doc, Format::Ecs, 1000);
        assert_eq!(
            ecs["flow_agent"],
            json!({"flow_id": "f-1", "record_truncated": true})
        );
        assert!(ecs.get("record_truncated").is_none());
        assert_eq!(ecs["host"]["hostname"], "vm");
        // Without the object, it is added.
        let (_, ocsf) = shortened(&doc, Format::Ocsf, 1000);
        assert_eq!(ocsf["unmapped"], json!({"record_truncated": true}));
        // An empty object gets no stray comma.
        let mut empty = doc.clone();
        empty["unmapped"] = json!({});
        let (_, ocsf) = shortened(&empty, Format::Ocsf, 1000);
        assert_eq!(ocsf["unmapped"], json!({"record_truncated": true}));
        // A nested object of the same name is not the one.
        let nested = json!({"process": {"flow_agent": {}, "command_line": "z".repeat(3000)}});
        let (_, ecs) = shortened(&nested, Format::Ecs, 800);
        assert_eq!(ecs["process"]["flow_agent"], json!({}));
        assert_eq!(ecs["flow_agent"], json!({"record_truncated": true}));
        // Zeek: at the top level.
        let (_, zeek) = shortened(&doc, Format::Zeek, 1000);
        assert_eq!(zeek["record_truncated"], true);
    }

    #[test]
    fn what_cannot_fit_or_is_not_json_is_refused() {
        // Many fields, short values: even every value cut to `…` is too long.
        let many: serde_json::Map<String, Value> = (0..200)
            .map(|i| (format!("field_{i}"), json!("value")))
            .collect();
        let raw = serde_json::to_vec(&Value::Object(many)).unwrap();
        assert!(shorten(&raw, Format::Native, 600).is_none());
        assert!(shorten(&[b'x'; 700], Format::Native, 600).is_none());
        assert!(shorten(b"{\"a\":\"unterminated", Format::Native, 5).is_none());
        assert!(shorten(b"{\"a\":1} trailing", Format::Native, 5).is_none());
        assert!(shorten(b"[\"an array\"]", Format::Native, 5).is_none());
        assert!(shorten(b"<Event>no event data</Event>", Format::Sysmon, 5).is_none());
    }

    #[test]
    fn sysmon_xml_stays_well_formed_and_marked() {
        // What the encoder wrote for "a&é" repeated: references all along the value.
        let image = format!("/usr/bin/{}", "a&amp;é".repeat(500));
        let record = format!(
            "<Event><System><EventID>3</EventID><Computer>vm</Computer></System><EventData><Data Name=\"RuleName\">-</Data><Data Name=\"Image\">{image}</Data><Data Name=\"User\">root</Data></EventData></Event>"
        );
        for max in [400, 401, 402, 403, 404, 405, 406, 407, 1000] {
            let out = shorten(record.as_bytes(), Format::Sysmon, max).unwrap();
            assert!(out.len() <= max, "{} > {max}", out.len());
            let text = String::from_utf8(out).expect("UTF-8");
            assert!(
                text.ends_with(
                    "</Data><Data Name=\"User\">root</Data><Data Name=\"RecordTruncated\">true</Data></EventData></Event>"
                ),
                "{text}"
            );
            assert!(text.starts_with(
                "<Event><System><EventID>3</EventID><Computer>vm</Computer></System><EventData><Data Name=\"RuleName\">-</Data><Data Name=\"Image\">/usr/bin/a&amp;"
            ));
            // No entity cut in half: every & starts a whole reference.
            for (i, _) in text.match_indices('&') {
                assert!(text[i..].starts_with("&amp;"), "{text}");
            }
            assert_eq!(text.matches('<').count(), text.matches('>').count());
        }
    }
}
