//! Request bodies: records framed as NDJSON or `_bulk` action/document pairs, split to the
//! size limits, optionally gzipped.
use std::io::Write;

use flate2::{write::GzEncoder, Compression};

/// How records become body lines.
#[derive(Clone, Debug)]
pub(crate) struct Framing {
    /// `_bulk` action line written before every document (without its newline); None for
    /// plain NDJSON.
    pub(crate) action: Option<Vec<u8>>,
    pub(crate) max_records: usize,
    pub(crate) max_bytes: usize,
}

impl Framing {
    pub(crate) fn ndjson(max_records: usize, max_bytes: usize) -> Self {
        Self {
            action: None,
            max_records: max_records.max(1),
            max_bytes,
        }
    }

    /// `{"create":{"_index":"<index>"}}`, or `{"create":{}}` when the URL names the index.
    /// `create` because data streams take nothing else.
    pub(crate) fn bulk(index: Option<&str>, max_records: usize, max_bytes: usize) -> Self {
        let action = match index {
            Some(index) => format!(
                r#"{{"create":{{"_index":{}}}}}"#,
                serde_json::Value::from(index)
            ),
            None => r#"{"create":{}}"#.to_string(),
        };
        Self {
            action: Some(action.into_bytes()),
            ..Self::ndjson(max_records, max_bytes)
        }
    }

    /// Bytes one record takes in a body.
    fn framed_len(&self, record: &[u8]) -> usize {
        record.len() + 1 + self.action.as_ref().map_or(0, |a| a.len() + 1)
    }

    /// Splits the records at `indices` (in order) into request-sized groups.
    pub(crate) fn split(&self, records: &[Vec<u8>], indices: &[usize]) -> Vec<Vec<usize>> {
        let mut groups = Vec::new();
        let mut current = Vec::new();
        let mut bytes = 0;
        for &i in indices {
            let len = self.framed_len(&records[i]);
            if !current.is_empty()
                && (current.len() >= self.max_records || bytes + len > self.max_bytes)
            {
                groups.push(std::mem::take(&mut current));
                bytes = 0;
            }
            current.push(i);
            bytes += len;
        }
        if !current.is_empty() {
            groups.push(current);
        }
        groups
    }

    /// The body of one request: every line newline-terminated.
    pub(crate) fn body(&self, records: &[Vec<u8>], group: &[usize]) -> Vec<u8> {
        let size = group.iter().map(|&i| self.framed_len(&records[i])).sum();
        let mut body = Vec::with_capacity(size);
        for &i in group {
            if let Some(action) = &self.action {
                body.extend_from_slice(action);
                body.push(b'\n');
            }
            body.extend_from_slice(&records[i]);
            body.push(b'\n');
        }
        body
    }
}

/// gzip of `body` (RFC 1952).
pub(crate) fn gzip(body: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::with_capacity(body.len() / 4), Compression::default());
    // Writing into a Vec cannot fail.
    enc.write_all(body).expect("gzip into memory");
    enc.finish().expect("gzip into memory")
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn recs(texts: &[&str]) -> Vec<Vec<u8>> {
        texts.iter().map(|t| t.as_bytes().to_vec()).collect()
    }

    #[test]
    fn ndjson_lines_are_newline_terminated() {
        let f = Framing::ndjson(10, 1000);
        let r = recs(&[r#"{"a":1}"#, r#"{"b":2}"#]);
        assert_eq!(f.body(&r, &[0, 1]), b"{\"a\":1}\n{\"b\":2}\n");
    }

    #[test]
    fn bulk_pairs_name_the_index_escaped() {
        let f = Framing::bulk(Some("logs-flow\"x"), 10, 1000);
        let r = recs(&[r#"{"a":1}"#]);
        assert_eq!(
            String::from_utf8(f.body(&r, &[0])).unwrap(),
            "{\"create\":{\"_index\":\"logs-flow\\\"x\"}}\n{\"a\":1}\n"
        );
        let f = Framing::bulk(None, 10, 1000);
        assert_eq!(f.body(&r, &[0]), b"{\"create\":{}}\n{\"a\":1}\n");
    }

    #[test]
    fn splits_by_count_and_bytes() {
        let r = recs(&["aaaa", "bbbb", "cccc", "dddd", "eeeeeeeeeeeeeeeeeeee"]);
        // Each small record takes 5 bytes framed.
        assert_eq!(
            Framing::ndjson(2, 1000).split(&r, &[0, 1, 2, 3]),
            vec![vec![0, 1], vec![2, 3]]
        );
        assert_eq!(
            Framing::ndjson(10, 12).split(&r, &[0, 1, 2, 4, 3]),
            vec![vec![0, 1], vec![2], vec![4], vec![3]]
        );
        assert_eq!(
            Framing::ndjson(10, 1000).split(&r, &[3, 1]),
            vec![vec![3, 1]]
        );
    }

    #[test]
    fn gzip_round_trips() {
        let body = b"{\"a\":1}\n".repeat(100);
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&gzip(&body)[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, body);
    }
}
