//! The Elasticsearch `_bulk` response: one item per document, in request order, each with its
//! own status. A 200 answer can still carry failed items.
use std::collections::HashMap;

use serde::Deserialize;

use super::status::{self, Verdict};

/// What happened to one document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ItemOutcome {
    Taken,
    /// Worth sending again (the cluster was busy).
    Retry(u16),
    /// Refused for good (mapping conflict, bad document, ...), with the reason.
    Rejected(u16, String),
}

/// Why a `_bulk` answer cannot be read: nothing then tells which documents were taken.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BulkError {
    #[error("not an Elasticsearch _bulk response ({0})")]
    NotBulk(#[from] serde_json::Error),
    #[error("_bulk response has {items} items for {sent} documents")]
    ItemCount { items: usize, sent: usize },
    #[error("_bulk response item without an action")]
    NoAction,
}

#[derive(Deserialize)]
struct Response {
    errors: bool,
    #[serde(default)]
    items: Vec<HashMap<String, Item>>,
}

#[derive(Deserialize)]
struct Item {
    status: u16,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

/// Outcomes of the `sent` documents of one request.
pub(crate) fn parse(body: &[u8], sent: usize) -> Result<Vec<ItemOutcome>, BulkError> {
    let response: Response = serde_json::from_slice(body)?;
    if !response.errors {
        return Ok(vec![ItemOutcome::Taken; sent]);
    }
    if response.items.len() != sent {
        return Err(BulkError::ItemCount {
            items: response.items.len(),
            sent,
        });
    }
    response
        .items
        .into_iter()
        .map(|item| {
            let item = item.into_values().next().ok_or(BulkError::NoAction)?;
            Ok(match status::of_document(item.status) {
                Verdict::Taken => ItemOutcome::Taken,
                Verdict::Retry => ItemOutcome::Retry(item.status),
                // A document is never split: it is one record.
                Verdict::Refuse | Verdict::Split => {
                    ItemOutcome::Rejected(item.status, reason(item.error.as_ref()))
                }
            })
        })
        .collect()
}

/// `type: reason` of an item's error object.
fn reason(error: Option<&serde_json::Value>) -> String {
    let Some(e) = error else {
        return "no error detail".into();
    };
    let field = |k: &str| e.get(k).and_then(|v| v.as_str()).unwrap_or_default();
    match (field("type"), field("reason")) {
        ("", "") => e.to_string(),
        (t, r) => format!("{t}: {r}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_errors_means_all_taken() {
        let body = br#"{"took":3,"errors":false,"items":[{"create":{"status":201}}]}"#;
        assert_eq!(parse(body, 1).unwrap(), vec![ItemOutcome::Taken]);
    }

    #[test]
    fn per_item_statuses() {
        let body = br#"{"took":3,"errors":true,"items":[
            {"create":{"_index":"f","status":201}},
            {"create":{"_index":"f","status":429,"error":{"type":"es_rejected_execution_exception","reason":"queue full"}}},
            {"create":{"_index":"f","status":400,"error":{"type":"mapper_parsing_exception","reason":"failed to parse"}}},
            {"create":{"_index":"f","status":503}},
            {"create":{"_index":"f","status":500,"error":{"type":"exception","reason":"boom"}}},
            {"create":{"_index":"f","status":404,"error":{"type":"index_not_found_exception","reason":"no such index"}}}]}"#;
        assert_eq!(
            parse(body, 6).unwrap(),
            vec![
                ItemOutcome::Taken,
                ItemOutcome::Retry(429),
                ItemOutcome::Rejected(400, "mapper_parsing_exception: failed to parse".into()),
                ItemOutcome::Retry(503),
                ItemOutcome::Retry(500),
                ItemOutcome::Rejected(404, "index_not_found_exception: no such index".into()),
            ]
        );
    }

    #[test]
    fn malformed_responses_are_errors() {
        assert!(matches!(parse(b"<html>", 1), Err(BulkError::NotBulk(_))));
        assert!(matches!(
            parse(br#"{"errors":true,"items":[]}"#, 2),
            Err(BulkError::ItemCount { items: 0, sent: 2 })
        ));
        assert!(matches!(
            parse(br#"{"errors":true,"items":[{}]}"#, 1),
            Err(BulkError::NoAction)
        ));
    }
}
