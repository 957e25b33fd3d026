//! Escaping for the single-line XML records: whatever a process puts in its name, path or
//! arguments stays character data of one element on one line.

/// Appends `value` escaped for XML 1.0 character data or a double-quoted attribute:
/// markup characters as entities, line breaks (also NEL, U+2028, U+2029) and tabs as character
/// references (so the record stays on one line for any reader), and the characters XML 1.0 cannot carry at all (other C0
/// controls, U+FFFE, U+FFFF) as U+FFFD.
pub(crate) fn escape_into(out: &mut Vec<u8>, value: &str) {
    // Runs of characters that need nothing are copied whole.
    let mut run = 0;
    for (i, c) in value.char_indices() {
        let escaped = match c {
            '&' => "&amp;",
            '<' => "&lt;",
            '>' => "&gt;",
            '"' => "&quot;",
            '\'' => "&apos;",
            '\n' => "&#10;",
            '\r' => "&#13;",
            '\t' => "&#9;",
            // Line separators to some readers (Unicode line-break rules).
            '\u{85}' => "&#133;",
            '\u{2028}' => "&#8232;",
            '\u{2029}' => "&#8233;",
            '\u{0}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}' => "\u{fffd}",
            _ => continue,
        };
        out.extend_from_slice(&value.as_bytes()[run..i]);
        out.extend_from_slice(escaped.as_bytes());
        run = i + c.len_utf8();
    }
    out.extend_from_slice(&value.as_bytes()[run..]);
}

/// A `fmt::Write` that appends what is written to it escaped, for values formatted in place.
pub(crate) struct Escaped<'a>(pub(crate) &'a mut Vec<u8>);

impl std::fmt::Write for Escaped<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        escape_into(self.0, s);
        Ok(())
    }
}

/// What an XML parser reads back from [`escape_into`]'s output.
#[cfg(test)]
pub(crate) fn expected_text(value: &str) -> String {
    value
        .chars()
        .map(|c| match c {
            '\n' | '\r' | '\t' => c,
            '\u{0}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}' => '\u{fffd}',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esc(s: &str) -> String {
        let mut out = Vec::new();
        escape_into(&mut out, s);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn markup_and_line_breaks_are_escaped() {
        assert_eq!(
            esc("a<b>&\"c'\n\r\td"),
            "a&lt;b&gt;&amp;&quot;c&apos;&#10;&#13;&#9;d"
        );
        assert_eq!(
            esc("</Data><Data Name=\"x\">"),
            "&lt;/Data&gt;&lt;Data Name=&quot;x&quot;&gt;"
        );
        assert_eq!(esc("]]>"), "]]&gt;");
    }

    #[test]
    fn characters_xml_cannot_carry_become_replacement_characters() {
        assert_eq!(
            esc("\u{0}\u{1}\u{1b}\u{1f}\u{fffe}\u{ffff}"),
            "\u{fffd}".repeat(6)
        );
        // DEL, C1 controls and U+FFFD itself are allowed in XML 1.0; NEL and the Unicode
        // separators are written as references.
        assert_eq!(esc("\u{7f}\u{80}\u{fffd}é"), "\u{7f}\u{80}\u{fffd}é");
        assert_eq!(esc("\u{85}\u{2028}\u{2029}"), "&#133;&#8232;&#8233;");
        assert_eq!(expected_text("a\u{1}\nb"), "a\u{fffd}\nb");
    }
}
