//! The Elasticsearch `_bulk` response: one item per document, in request order, each with its
//! own status. A 200 answer can still carry failed items.
use std::collections::HashMap;

use serde::Deserialize;

/// What happened to one document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ItemOutcome {
    Taken,
    /// Worth sending again (the cluster was busy).
    Retry(u16),
    /// Refused for good (mapping conflict, bad document, ...), with the reason.
    Rejected(u16, String),
}

/// Item statuses sent again: 429 (rejected execution: queues full) and 503 (shards
/// unavailable), the statuses Logstash's Elasticsearch output retries.
fn retryable(status: u16) -> bool {
    matches!(status, 429 | 503)
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
pub fn parse(body: &[u8], sent: usize) -> Result<Vec<ItemOutcome>, String> {
    let response: Response = serde_json::from_slice(body)
        .map_err(|e| format!("not an Elasticsearch _bulk response ({e})"))?;
    if !response.errors {
        return Ok(vec![ItemOutcome::Taken; sent]);
    }
    if response.items.len() != sent {
        return Err(format!(
            "_bulk response has {} items for {sent} documents",
            response.items.len()
        ));
    }
    response
        .items
        .into_iter()
        .map(|item| {
            let item = item
                .into_values()
                .next()
                .ok_or("_bulk response item without an action")?;
            Ok(match item.status {
                200..=299 => ItemOutcome::Taken,
                s if retryable(s) => ItemOutcome::Retry(s),
                s => ItemOutcome::Rejected(s, reason(item.error.as_ref())),
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
            {"create":{"_index":"f","status":503}}]}"#;
        assert_eq!(
            parse(body, 4).unwrap(),
            vec![
                ItemOutcome::Taken,
                ItemOutcome::Retry(429),
                ItemOutcome::Rejected(400, "mapper_parsing_exception: failed to parse".into()),
                ItemOutcome::Retry(503),
            ]
        );
    }

    #[test]
    fn malformed_responses_are_errors() {
        assert!(parse(b"<html>", 1).is_err());
        assert!(parse(br#"{"errors":true,"items":[]}"#, 2).is_err());
    }
}
