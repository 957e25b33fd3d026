//! The transport against a real HTTP server on loopback that records each request and
//! answers from a script.
use std::{
    collections::VecDeque,
    io::Read,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, server::conn::http1, service::service_fn, Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::{transport::HttpTransport, HttpConfig, HttpMode};
use crate::{
    encode::Format,
    sink::delivery::{Transport, TransportError},
};

#[derive(Debug)]
struct Seen {
    path: String,
    headers: hyper::HeaderMap,
    /// Decompressed when gzipped.
    body: String,
}

/// One scripted answer: status, body, `Retry-After`. Status 0: no answer for a long time;
/// status 1: what the rules say.
type Answer = (u16, String, Option<String>);

#[derive(Default)]
struct Script {
    answers: VecDeque<Answer>,
    seen: Vec<Seen>,
    /// Close the connection after each answer.
    close_each: bool,
    /// Rules once the script is used up: 413 for a body above this many bytes...
    max_body: Option<usize>,
    /// ... 400 for a body containing this text, else 200 `{}`.
    refuse_text: Option<String>,
}

impl Script {
    fn answer(&mut self, body: &str) -> Answer {
        match self.answers.pop_front() {
            Some((1, ..)) | None => self.by_rules(body),
            Some(answer) => answer,
        }
    }

    fn by_rules(&self, body: &str) -> Answer {
        if self.max_body.is_some_and(|max| body.len() > max) {
            return (413, "too large".into(), None);
        }
        if self.refuse_text.as_ref().is_some_and(|t| body.contains(t)) {
            return (400, "refused".into(), None);
        }
        (200, "{}".into(), None)
    }
}

/// Serves until the test ends; answers from the script, then by its rules.
async fn server(script: Arc<Mutex<Script>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let keep_alive = !script.lock().unwrap().close_each;
            let script = script.clone();
            let svc = service_fn(move |req: Request<Incoming>| {
                let script = script.clone();
                async move {
                    let (parts, body) = req.into_parts();
                    let raw = body.collect().await.unwrap().to_bytes();
                    let body = if parts.headers.get("content-encoding").is_some() {
                        let mut s = String::new();
                        flate2::read::GzDecoder::new(&raw[..])
                            .read_to_string(&mut s)
                            .unwrap();
                        s
                    } else {
                        String::from_utf8(raw.to_vec()).unwrap()
                    };
                    let (status, text, retry_after) = {
                        let mut s = script.lock().unwrap();
                        let answer = s.answer(&body);
                        s.seen.push(Seen {
                            path: parts.uri.to_string(),
                            headers: parts.headers,
                            body,
                        });
                        answer
                    };
                    // Status 0: no answer for a long time.
                    let status = if status == 0 {
                        tokio::time::sleep(std::time::Duration::from_secs(30)).await;
                        200
                    } else {
                        status
                    };
                    let mut response = Response::builder().status(status);
                    if let Some(after) = retry_after {
                        response = response.header("retry-after", after);
                    }
                    Ok::<_, std::convert::Infallible>(
                        response.body(Full::new(Bytes::from(text))).unwrap(),
                    )
                }
            });
            tokio::spawn(
                http1::Builder::new()
                    .keep_alive(keep_alive)
                    .serve_connection(TokioIo::new(tcp), svc),
            );
        }
    });
    format!("http://{addr}")
}

fn records(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!(r#"{{"n":{i}}}"#).into_bytes())
        .collect()
}

fn transport(config: HttpConfig) -> HttpTransport {
    HttpTransport::new(&config, Format::Native).unwrap()
}

async fn setup(answers: &[(u16, &str)]) -> (Arc<Mutex<Script>>, String) {
    setup_script(Script {
        answers: answers
            .iter()
            .map(|(s, t)| (*s, t.to_string(), None))
            .collect(),
        ..Script::default()
    })
    .await
}

async fn setup_script(script: Script) -> (Arc<Mutex<Script>>, String) {
    let script = Arc::new(Mutex::new(script));
    let url = server(script.clone()).await;
    (script, url)
}

/// The bodies of every request so far.
fn bodies(script: &Mutex<Script>) -> Vec<String> {
    script
        .lock()
        .unwrap()
        .seen
        .iter()
        .map(|s| s.body.clone())
        .collect()
}

/// An NDJSON body of the records at `indices`.
fn body_of(records: &[Vec<u8>], indices: &[usize]) -> String {
    indices
        .iter()
        .map(|&i| format!("{}\n", String::from_utf8_lossy(&records[i])))
        .collect()
}

#[tokio::test]
async fn ndjson_body_headers_and_keep_alive() {
    let (script, url) = setup(&[]).await;
    let mut t = transport(HttpConfig {
        url: format!("{url}/ingest?x=1"),
        user: Some("agent".into()),
        password: Some("pw".into()),
        gzip: true,
        ..HttpConfig::default()
    });
    t.send(&records(2)).await.unwrap();
    t.send(&records(1)).await.unwrap();
    let s = script.lock().unwrap();
    assert_eq!(s.seen.len(), 2);
    let first = &s.seen[0];
    assert_eq!(first.path, "/ingest?x=1");
    assert_eq!(first.body, "{\"n\":0}\n{\"n\":1}\n");
    assert_eq!(first.headers["content-type"], "application/x-ndjson");
    assert_eq!(first.headers["content-encoding"], "gzip");
    assert_eq!(first.headers["authorization"], "Basic YWdlbnQ6cHc=");
    assert_eq!(first.headers["host"], url.trim_start_matches("http://"));
    assert_eq!(s.seen[1].body, "{\"n\":0}\n");
    assert_eq!(t.describe(), format!("NDJSON to {url}/ingest?x=1 (gzip)"));
    // One connection for both requests.
    assert_eq!(t.connects(), 1);
}

#[tokio::test]
async fn statuses_that_say_nothing_against_the_records_are_retried() {
    // Issue 16 item 6: a collector answering 401 for a while made the sink drop every
    // record. Credentials, throttling, server errors and a wrong endpoint all keep them.
    let statuses = [
        401, 403, 407, 408, 429, 500, 502, 503, 504, 404, 405, 415, 301,
    ];
    let answers: Vec<(u16, &str)> = statuses.iter().map(|&s| (s, "no")).collect();
    let (script, url) = setup(&answers).await;
    let mut t = transport(HttpConfig {
        url,
        ..HttpConfig::default()
    });
    let r = records(3);
    for status in statuses {
        match t.send(&r).await {
            Err(TransportError::Retry(why)) => {
                assert!(why.starts_with(&format!("HTTP {status} ")), "{why}")
            }
            other => panic!("{status}: want Retry, got {other:?}"),
        }
    }
    t.send(&r).await.unwrap();
    // Every attempt carried the whole batch, and the last one was taken.
    let want = body_of(&r, &[0, 1, 2]);
    assert_eq!(bodies(&script), vec![want; statuses.len() + 1]);
}

#[tokio::test]
async fn retry_after_is_passed_on_for_429_and_503_only() {
    let answer = |status: u16, after: &str| (status, String::new(), Some(after.to_string()));
    let (_script, url) = setup_script(Script {
        answers: [answer(429, "7"), answer(503, "3600"), answer(401, "7")].into(),
        ..Script::default()
    })
    .await;
    let mut t = transport(HttpConfig {
        url,
        ..HttpConfig::default()
    });
    let r = records(1);
    // Unbounded here: the delivery worker caps the wait at backoff_max.
    for (status, secs) in [(429, 7), (503, 3600)] {
        match t.send(&r).await {
            Err(TransportError::Throttled { reason, after }) => {
                assert!(reason.starts_with(&format!("HTTP {status} ")), "{reason}");
                assert_eq!(after, std::time::Duration::from_secs(secs));
            }
            other => panic!("want Throttled, got {other:?}"),
        }
    }
    match t.send(&r).await {
        Err(TransportError::Retry(why)) => assert!(why.starts_with("HTTP 401 "), "{why}"),
        other => panic!("want Retry, got {other:?}"),
    }
}

/// Records of 8 bytes framed (`{"n":i}`), except a 31-byte one at index 2.
fn records_with_a_large_one() -> Vec<Vec<u8>> {
    let mut r = records(5);
    r[2] = br#"{"n":2,"pad":"xxxxxxxxxxxxxxx"}"#.to_vec();
    r
}

#[tokio::test]
async fn a_413_splits_the_batch_in_halves_and_drops_only_a_record_too_large_alone() {
    let (script, url) = setup_script(Script {
        max_body: Some(16),
        ..Script::default()
    })
    .await;
    let mut t = transport(HttpConfig {
        url,
        ..HttpConfig::default()
    });
    let r = records_with_a_large_one();
    match t.send(&r).await {
        Err(TransportError::Rejected { count, reason }) => {
            assert_eq!(count, 1);
            assert!(
                reason.contains("HTTP 413") && reason.contains("one record, 32 bytes"),
                "{reason}"
            );
        }
        other => panic!("want Rejected, got {other:?}"),
    }
    // Halves in order, first half first; the large record alone, once.
    let sent: Vec<String> = [&[0, 1, 2, 3, 4][..], &[0, 1], &[2, 3, 4], &[2], &[3, 4]]
        .iter()
        .map(|g| body_of(&r, g))
        .collect();
    assert_eq!(bodies(&script), sent);
    // Nothing of that batch is remembered for the next one.
    t.send(&records(2)).await.unwrap();
    assert_eq!(
        bodies(&script).last().unwrap(),
        &body_of(&records(2), &[0, 1])
    );
}

#[tokio::test]
async fn a_split_cut_short_by_a_retry_goes_on_with_what_was_not_taken() {
    // 413 for the whole batch (by the rule), 200 for its first half, then 503.
    let (script, url) = setup_script(Script {
        answers: [
            (1, String::new(), None),
            (1, String::new(), None),
            (503, String::new(), None),
        ]
        .into(),
        max_body: Some(16),
        ..Script::default()
    })
    .await;
    let mut t = transport(HttpConfig {
        url,
        ..HttpConfig::default()
    });
    let r = records(4);
    assert!(matches!(t.send(&r).await, Err(TransportError::Retry(_))));
    t.send(&r).await.unwrap();
    let sent: Vec<String> = [&[0, 1, 2, 3][..], &[0, 1], &[2, 3], &[2, 3]]
        .iter()
        .map(|g| body_of(&r, g))
        .collect();
    assert_eq!(bodies(&script), sent);
}

#[tokio::test]
async fn a_400_for_a_batch_drops_only_the_record_refused_alone() {
    let (script, url) = setup_script(Script {
        refuse_text: Some("pad".into()),
        ..Script::default()
    })
    .await;
    let mut t = transport(HttpConfig {
        url,
        ..HttpConfig::default()
    });
    let r = records_with_a_large_one();
    match t.send(&r).await {
        Err(TransportError::Rejected { count, reason }) => {
            assert_eq!(count, 1);
            assert!(
                reason.contains("HTTP 400") && reason.contains("refused"),
                "{reason}"
            );
        }
        other => panic!("want Rejected, got {other:?}"),
    }
    let sent: Vec<String> = [&[0, 1, 2, 3, 4][..], &[0, 1], &[2, 3, 4], &[2], &[3, 4]]
        .iter()
        .map(|g| body_of(&r, g))
        .collect();
    assert_eq!(bodies(&script), sent);
}

#[tokio::test]
async fn bulk_top_level_statuses_follow_the_request_rules() {
    let (script, url) = setup_script(Script {
        answers: [(401, "{}".to_string(), None)].into(),
        max_body: Some(100),
        ..Script::default()
    })
    .await;
    let mut t = transport(HttpConfig {
        url: format!("{url}/"),
        mode: HttpMode::ElasticsearchBulk,
        index: Some("f".into()),
        ..HttpConfig::default()
    });
    // Each document takes 26 + 8 bytes framed: four are 136 bytes (413), two are 68.
    let r = records(4);
    match t.send(&r).await {
        Err(TransportError::Retry(why)) => assert!(why.starts_with("HTTP 401 "), "{why}"),
        other => panic!("want Retry, got {other:?}"),
    }
    // The rules answer 200 `{}`, which is no _bulk response: give a real one.
    script.lock().unwrap().answers = [
        (1, String::new(), None),
        (200, r#"{"errors":false,"items":[]}"#.to_string(), None),
        (200, r#"{"errors":false,"items":[]}"#.to_string(), None),
    ]
    .into();
    t.send(&r).await.unwrap();
    let action = "{\"create\":{\"_index\":\"f\"}}\n";
    let doc = |i: usize| format!("{action}{{\"n\":{i}}}\n");
    let all: String = (0..4).map(doc).collect();
    assert_eq!(
        bodies(&script),
        [all.clone(), all, doc(0) + &doc(1), doc(2) + &doc(3)]
    );
}

#[tokio::test]
async fn a_split_batch_resends_only_what_was_not_taken() {
    let (script, url) = setup(&[(200, ""), (500, "")]).await;
    // Each record takes 8 bytes framed: two per request.
    let mut t = transport(HttpConfig {
        url,
        max_batch_bytes: 16,
        ..HttpConfig::default()
    });
    let r = records(4);
    assert!(matches!(t.send(&r).await, Err(TransportError::Retry(_))));
    t.send(&r).await.unwrap();
    let bodies: Vec<String> = script
        .lock()
        .unwrap()
        .seen
        .iter()
        .map(|s| s.body.clone())
        .collect();
    assert_eq!(
        bodies,
        [
            "{\"n\":0}\n{\"n\":1}\n",
            "{\"n\":2}\n{\"n\":3}\n",
            "{\"n\":2}\n{\"n\":3}\n"
        ]
    );
}

#[tokio::test]
async fn bulk_items_failed_with_429_are_sent_again_the_rest_counted() {
    let partial = r#"{"took":1,"errors":true,"items":[
        {"create":{"status":201}},
        {"create":{"status":429,"error":{"type":"es_rejected_execution_exception","reason":"queue"}}},
        {"create":{"status":400,"error":{"type":"mapper_parsing_exception","reason":"bad field"}}}]}"#;
    let (script, url) = setup(&[(200, partial), (200, r#"{"errors":false,"items":[]}"#)]).await;
    let mut t = transport(HttpConfig {
        url: format!("{url}/"),
        mode: HttpMode::ElasticsearchBulk,
        index: Some("logs-flow-default".into()),
        ..HttpConfig::default()
    });
    let r = records(3);
    match t.send(&r).await {
        Err(TransportError::Retry(why)) => assert!(why.contains("1 documents"), "{why}"),
        other => panic!("want Retry, got {other:?}"),
    }
    match t.send(&r).await {
        Err(TransportError::Rejected { count, reason }) => {
            assert_eq!(count, 1);
            assert!(
                reason.contains("mapper_parsing_exception: bad field"),
                "{reason}"
            );
        }
        other => panic!("want Rejected, got {other:?}"),
    }
    let s = script.lock().unwrap();
    let action = "{\"create\":{\"_index\":\"logs-flow-default\"}}\n";
    assert_eq!(s.seen[0].path, "/_bulk");
    assert_eq!(
        s.seen[0].body,
        format!("{action}{{\"n\":0}}\n{action}{{\"n\":1}}\n{action}{{\"n\":2}}\n")
    );
    assert_eq!(s.seen[1].body, format!("{action}{{\"n\":1}}\n"));
}

#[tokio::test]
async fn an_abandoned_send_drops_its_connection_and_keeps_what_was_settled() {
    let (script, url) = setup(&[(200, ""), (0, "")]).await;
    let mut t = transport(HttpConfig {
        url,
        max_batch_bytes: 16,
        ..HttpConfig::default()
    });
    let r = records(4);
    // The worker gives up on a send that hangs (its send_timeout).
    let abandoned = tokio::time::timeout(std::time::Duration::from_millis(300), t.send(&r)).await;
    assert!(abandoned.is_err());
    t.send(&r).await.unwrap();
    let bodies: Vec<String> = script
        .lock()
        .unwrap()
        .seen
        .iter()
        .map(|s| s.body.clone())
        .collect();
    assert_eq!(
        bodies,
        [
            "{\"n\":0}\n{\"n\":1}\n",
            "{\"n\":2}\n{\"n\":3}\n",
            "{\"n\":2}\n{\"n\":3}\n"
        ]
    );
    assert_eq!(t.connects(), 2);
}

#[tokio::test]
async fn closed_connections_are_opened_again() {
    let (script, url) = setup(&[]).await;
    script.lock().unwrap().close_each = true;
    let mut t = transport(HttpConfig {
        url,
        ..HttpConfig::default()
    });
    for _ in 0..3 {
        t.send(&records(1)).await.unwrap();
    }
    assert_eq!(script.lock().unwrap().seen.len(), 3);
    assert_eq!(t.connects(), 3);
}

#[tokio::test]
async fn unreachable_server_is_a_retry() {
    // A loopback port nobody listens on: connection refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut t = transport(HttpConfig {
        url: format!("http://127.0.0.1:{port}/"),
        ..HttpConfig::default()
    });
    match t.send(&records(1)).await {
        Err(TransportError::Retry(why)) => {
            assert!(
                why.contains(&format!("connecting to 127.0.0.1 port {port}")),
                "{why}"
            )
        }
        other => panic!("want Retry, got {other:?}"),
    }
}

#[test]
fn configuration_errors_name_the_problem() {
    let err = |config: HttpConfig, format: Format| {
        HttpTransport::new(&config, format)
            .err()
            .expect("refused")
            .to_string()
    };
    let url = "http://127.0.0.1:1/".to_string();
    let base = HttpConfig {
        url: url.clone(),
        ..HttpConfig::default()
    };
    assert!(err(base.clone(), Format::Sysmon).contains("format sysmon is not JSON"));
    let bulk = HttpConfig {
        mode: HttpMode::ElasticsearchBulk,
        ..base.clone()
    };
    assert!(err(bulk.clone(), Format::Native).contains("needs an index"));
    let bulk_path = HttpConfig {
        url: "http://127.0.0.1:1/flows/_search".into(),
        ..bulk
    };
    assert!(err(bulk_path, Format::Native).contains("needs a _bulk url"));
    let index = HttpConfig {
        index: Some("x".into()),
        ..base.clone()
    };
    assert!(err(index, Format::Ecs).contains("index is only used"));
    let ca = HttpConfig {
        ca_file: Some("/nonexistent".into()),
        ..base.clone()
    };
    assert!(err(ca, Format::Native).contains("https urls only"));
    let ca = HttpConfig {
        url: "https://127.0.0.1:1/".into(),
        ca_file: Some("/nonexistent/ca.pem".into()),
        ..base
    };
    assert!(err(ca, Format::Native).contains("ca_file /nonexistent/ca.pem"));
}

#[test]
fn credentials_on_a_plain_http_url_are_named_in_a_warning() {
    let config = |url: &str, password: Option<&str>, headers: &[(&str, &str)]| HttpConfig {
        url: url.into(),
        user: password.map(|_| "elastic".into()),
        password: password.map(Into::into),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..HttpConfig::default()
    };
    let plain = config(
        "http://collector:8080/in?api_key=k&tenant=a",
        Some("pw-secret"),
        &[
            ("Authorization", "Bearer hdr-secret"),
            ("Content-Type", "application/json"),
            ("X-Api-Key", "key-secret"),
        ],
    );
    assert_eq!(
        plain.cleartext_credentials(),
        [
            "the basic authentication password",
            "header Authorization",
            "header X-Api-Key",
            "query parameter api_key"
        ]
    );
    let warning = plain.cleartext_warning().unwrap();
    assert!(
        warning.starts_with("INSECURE: credentials in clear text: ")
            && warning.contains("sent to http://collector:8080 unencrypted")
            && warning.contains("use an https:// url"),
        "{warning}"
    );
    // The warning names credentials, never shows them.
    for secret in ["pw-secret", "hdr-secret", "key-secret", "api_key=k"] {
        assert!(!warning.contains(secret), "{warning}");
    }
    // Nothing to warn about: HTTPS, or plain HTTP without credentials.
    let tls = config(
        "https://collector/in?token=t",
        Some("pw"),
        &[("Authorization", "x")],
    );
    assert!(tls.cleartext_warning().is_none());
    let anonymous = config(
        "http://127.0.0.1:9880/",
        None,
        &[("Content-Type", "application/json")],
    );
    assert!(anonymous.cleartext_warning().is_none());
    assert!(config("not a url", Some("pw"), &[])
        .cleartext_warning()
        .is_none());
}
