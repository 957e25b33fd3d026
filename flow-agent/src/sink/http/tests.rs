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

#[derive(Default)]
struct Script {
    answers: VecDeque<(u16, String)>,
    seen: Vec<Seen>,
    /// Close the connection after each answer.
    close_each: bool,
}

/// Serves until the test ends; answers 200 `{}` once the script is used up.
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
                    let (status, text) = {
                        let mut s = script.lock().unwrap();
                        s.seen.push(Seen {
                            path: parts.uri.to_string(),
                            headers: parts.headers,
                            body,
                        });
                        s.answers.pop_front().unwrap_or((200, "{}".into()))
                    };
                    // Status 0: no answer for a long time.
                    let status = if status == 0 {
                        tokio::time::sleep(std::time::Duration::from_secs(30)).await;
                        200
                    } else {
                        status
                    };
                    Ok::<_, std::convert::Infallible>(
                        Response::builder()
                            .status(status)
                            .body(Full::new(Bytes::from(text)))
                            .unwrap(),
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
    let script = Arc::new(Mutex::new(Script {
        answers: answers.iter().map(|(s, t)| (*s, t.to_string())).collect(),
        ..Script::default()
    }));
    let url = server(script.clone()).await;
    (script, url)
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
async fn server_errors_retry_client_errors_reject() {
    let (script, url) = setup(&[(503, "busy"), (429, ""), (400, "bad json")]).await;
    let mut t = transport(HttpConfig {
        url,
        ..HttpConfig::default()
    });
    let r = records(3);
    for want in ["HTTP 503 Service Unavailable", "HTTP 429 Too Many Requests"] {
        match t.send(&r).await {
            Err(TransportError::Retry(why)) => assert!(why.contains(want), "{why}"),
            other => panic!("want Retry, got {other:?}"),
        }
    }
    match t.send(&r).await {
        Err(TransportError::Rejected { count, reason }) => {
            assert_eq!(count, 3);
            assert!(
                reason.contains("HTTP 400") && reason.contains("bad json"),
                "{reason}"
            );
        }
        other => panic!("want Rejected, got {other:?}"),
    }
    // All three attempts carried the whole batch.
    let s = script.lock().unwrap();
    assert!(s
        .seen
        .iter()
        .all(|r| r.body == "{\"n\":0}\n{\"n\":1}\n{\"n\":2}\n"));
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
