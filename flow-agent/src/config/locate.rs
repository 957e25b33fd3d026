//! Where things are in a configuration file: key paths (`outputs[1].filter.exclude[0].cidr`)
//! to line and column, and the reverse for the byte offsets serde's errors carry.
use std::{fmt, ops::Range};

use toml_edit::{ImDocument, Item, Table, Value};

/// One step of a key path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Segment {
    Key(String),
    Index(usize),
}

/// A path from the document's root to a key, as error messages show it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyPath(pub(crate) Vec<Segment>);

impl KeyPath {
    pub(crate) fn root() -> Self {
        Self::default()
    }

    pub(crate) fn key(&self, k: &str) -> Self {
        let mut p = self.clone();
        p.0.push(Segment::Key(k.to_string()));
        p
    }

    pub(crate) fn index(&self, i: usize) -> Self {
        let mut p = self.clone();
        p.0.push(Segment::Index(i));
        p
    }

    pub(crate) fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    fn parent(&self) -> Option<Self> {
        let mut p = self.clone();
        p.0.pop().map(|_| p)
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Segment::Index(n) => write!(f, "[{n}]")?,
                Segment::Key(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    let bare = !k.is_empty()
                        && k.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                    if bare {
                        f.write_str(k)?;
                    } else {
                        write!(f, "{k:?}")?;
                    }
                }
            }
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Part {
    /// The key itself (`cidr` in `cidr = "..."`): where a person looks first.
    Key,
    /// A `[table]` or `[[array]]` header.
    Header,
    Value,
}

/// Every key, header and value of one file with its byte span.
pub(crate) struct SpanIndex {
    entries: Vec<(KeyPath, Part, Range<usize>)>,
    line_starts: Vec<usize>,
    text: String,
}

impl SpanIndex {
    /// None when the text is not TOML (the parser's own error says where).
    pub(crate) fn new(text: &str) -> Option<Self> {
        let doc = ImDocument::parse(text.to_string()).ok()?;
        let mut entries = Vec::new();
        walk_table(doc.as_table(), &KeyPath::root(), &mut entries);
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Some(Self {
            entries,
            line_starts,
            text: text.to_string(),
        })
    }

    /// The innermost key path whose key, header or value covers `offset`.
    pub(crate) fn path_at(&self, offset: usize) -> Option<KeyPath> {
        self.entries
            .iter()
            .filter(|(_, _, r)| r.start <= offset && offset < r.end.max(r.start + 1))
            .min_by_key(|(_, _, r)| r.end - r.start)
            .map(|(p, _, _)| p.clone())
    }

    /// The span of `path` (its key, else header, else value); of its nearest ancestor present
    /// in the file when the path itself is not (a default, or a missing key).
    pub(crate) fn span_of(&self, path: &KeyPath) -> Option<Range<usize>> {
        let mut p = Some(path.clone());
        while let Some(path) = p {
            if path.is_root() {
                return None;
            }
            let best = self
                .entries
                .iter()
                .filter(|(q, _, _)| *q == path)
                .min_by_key(|(_, part, r)| (*part, r.start));
            if let Some((_, _, r)) = best {
                return Some(r.clone());
            }
            p = path.parent();
        }
        None
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub(crate) fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|s| *s <= offset);
        let start = self.line_starts[line - 1];
        let col = self
            .text
            .get(start..offset)
            .map_or(1, |s| s.chars().count() + 1);
        (line, col)
    }
}

/// Line and column of a byte offset in any text (also when it is not valid TOML).
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map_or(1, |s| s.chars().count() + 1);
    (line, col)
}

type Entries = Vec<(KeyPath, Part, Range<usize>)>;

fn push(out: &mut Entries, path: &KeyPath, part: Part, span: Option<Range<usize>>) {
    if let Some(span) = span {
        out.push((path.clone(), part, span));
    }
}

fn walk_table(t: &Table, path: &KeyPath, out: &mut Entries) {
    for (k, item) in t.iter() {
        let p = path.key(k);
        push(out, &p, Part::Key, t.key(k).and_then(|k| k.span()));
        walk_item(item, &p, out);
    }
}

fn walk_item(item: &Item, path: &KeyPath, out: &mut Entries) {
    match item {
        Item::Table(t) => {
            push(out, path, Part::Header, t.span());
            walk_table(t, path, out);
        }
        Item::ArrayOfTables(a) => {
            for (i, t) in a.iter().enumerate() {
                let p = path.index(i);
                push(out, &p, Part::Header, t.span());
                walk_table(t, &p, out);
            }
        }
        Item::Value(v) => walk_value(v, path, out),
        Item::None => {}
    }
}

fn walk_value(v: &Value, path: &KeyPath, out: &mut Entries) {
    push(out, path, Part::Value, v.span());
    match v {
        Value::Array(a) => {
            for (i, e) in a.iter().enumerate() {
                walk_value(e, &path.index(i), out);
            }
        }
        Value::InlineTable(t) => {
            for (k, e) in t.iter() {
                let p = path.key(k);
                push(out, &p, Part::Key, t.key(k).and_then(|k| k.span()));
                walk_value(e, &p, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"[agent]
log_level = "info"

[[outputs]]
format = "ecs"
[outputs.stdout]

[[outputs]]
filter.exclude = [
  { remote_cidr = "10.0.0/8" },
]
"#;

    #[test]
    fn paths_to_positions_and_back() {
        let idx = SpanIndex::new(TEXT).unwrap();
        let path = KeyPath::root()
            .key("outputs")
            .index(1)
            .key("filter")
            .key("exclude")
            .index(0)
            .key("remote_cidr");
        assert_eq!(path.to_string(), "outputs[1].filter.exclude[0].remote_cidr");
        let span = idx.span_of(&path).unwrap();
        assert_eq!(idx.line_col(span.start), (10, 5));
        let value_at = TEXT.find("\"10.0.0/8\"").unwrap();
        assert_eq!(idx.path_at(value_at), Some(path));
        // A key the file does not have: its nearest ancestor.
        let missing = KeyPath::root().key("outputs").index(0).key("name");
        assert_eq!(idx.line_col(idx.span_of(&missing).unwrap().start), (4, 1));
        assert_eq!(
            idx.path_at(TEXT.find("log_level").unwrap())
                .unwrap()
                .to_string(),
            "agent.log_level"
        );
    }

    #[test]
    fn line_col_counts_from_one() {
        assert_eq!(line_col("a\nbc\n", 3), (2, 2));
        assert_eq!(line_col("", 0), (1, 1));
    }
}
