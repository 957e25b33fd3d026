//! [`HttpTransport`]: sends batches as NDJSON or `_bulk` requests and sorts the answers
//! ([`status`] decides) into taken, worth retrying, to be sent again in halves, and refused
//! for good.
use std::{collections::VecDeque, sync::Arc, time::Duration};

use hyper::{header::HeaderMap, StatusCode};

use super::{
    auth,
    body::Framing,
    bulk,
    bulk::ItemOutcome,
    client::HttpClient,
    config_error,
    identity::ClientAuth,
    proxy, secrets,
    settled::{Progress, State},
    status::{self, Verdict},
    tls, Endpoint, HttpConfig, HttpMode,
};
use crate::{
    encode::Format,
    sink::{
        delivery::{SendFuture, Transport, TransportError},
        SinkError,
    },
};

/// How much of a refusing server's answer goes to the log.
const LOGGED_BODY: usize = 512;

pub(crate) struct HttpTransport {
    endpoint: Endpoint,
    mode: HttpMode,
    framing: Framing,
    headers: HeaderMap,
    gzip: bool,
    client: HttpClient,
    /// The client certificate, and whether a server asked for one the output lacks.
    client_auth: Arc<ClientAuth>,
    /// What was settled of the batch being sent, kept until all of it is.
    progress: Option<Progress>,
}

impl HttpTransport {
    pub(crate) fn new(config: &HttpConfig, format: Format) -> Result<Self, SinkError> {
        if !format.is_json() {
            return Err(config_error(format!(
                "format {} is not JSON: the http sink sends JSON documents, choose native, ecs, ocsf or zeek",
                format.name()
            )));
        }
        let mut endpoint = Endpoint::parse(&config.url).map_err(config_error)?;
        let framing = match config.mode {
            HttpMode::Ndjson => {
                if config.index.is_some() {
                    return Err(config_error(
                        "index is only used by mode = \"elasticsearch_bulk\"",
                    ));
                }
                Framing::ndjson(config.max_batch_records, config.max_batch_bytes)
            }
            HttpMode::ElasticsearchBulk => {
                if endpoint.path_only() == "/" {
                    endpoint.path = format!("/_bulk{}", &endpoint.path[1..]);
                }
                let path = endpoint.path_only();
                if !path.ends_with("/_bulk") {
                    return Err(config_error(format!(
                        "mode = \"elasticsearch_bulk\" needs a _bulk url (https://HOST:9200/_bulk), not {path}"
                    )));
                }
                if config.index.is_none() && path == "/_bulk" {
                    return Err(config_error(
                        "mode = \"elasticsearch_bulk\" needs an index (or a url /INDEX/_bulk)",
                    ));
                }
                if config.index.as_deref() == Some("") {
                    return Err(config_error("index is empty"));
                }
                Framing::bulk(
                    config.index.as_deref(),
                    config.max_batch_records,
                    config.max_batch_bytes,
                )
            }
        };
        if config.max_batch_records == 0 || config.max_batch_bytes == 0 {
            return Err(config_error(
                "max_batch_records and max_batch_bytes must be above 0",
            ));
        }
        if config.timeout == 0 {
            return Err(config_error("timeout must be at least 1 second"));
        }
        let client_auth = Arc::new(
            ClientAuth::load(
                config.client_cert.as_deref(),
                config.client_key.as_deref(),
                secrets::credentials_dir().as_deref(),
            )
            .map_err(config_error)?,
        );
        let tls = if endpoint.tls {
            Some(
                tls::client_config(
                    config.ca_file.as_deref(),
                    config.tls_verify,
                    client_auth.clone(),
                )
                .map_err(config_error)?,
            )
        } else if let Some(problem) = config.tls_options_problem(&endpoint) {
            return Err(config_error(problem));
        } else {
            None
        };
        let (headers, password) = secrets::resolve(
            &config.headers,
            &config.header_files,
            config.password.as_deref(),
            config.password_file.as_deref(),
            secrets::credentials_dir().as_deref(),
        )
        .map_err(|e| config_error(e.to_string()))?;
        let headers = auth::fixed_headers(&headers, config.user.as_deref(), password.as_deref())
            .map_err(config_error)?;
        let proxy = proxy::select(config.proxy.as_deref(), &endpoint, |name| {
            std::env::var(name).ok()
        })
        .map_err(config_error)?;
        if let Some(proxy) = &proxy {
            log::info!(
                "http sink: {} through proxy {}",
                endpoint.display(),
                proxy.display
            );
        }
        let client = HttpClient::new(
            endpoint.clone(),
            tls,
            proxy,
            Duration::from_secs(config.timeout),
        )
        .map_err(config_error)?;
        Ok(Self {
            endpoint,
            mode: config.mode,
            framing,
            headers,
            gzip: config.gzip,
            client,
            client_auth,
            progress: None,
        })
    }

    async fn send_batch(&mut self, records: &[Vec<u8>]) -> Result<(), TransportError> {
        // Kept in `self` while sending: if the worker abandons this send (timeout, close),
        // the next attempt still knows what was settled.
        self.progress = Some(Progress::resume(self.progress.take(), records));
        let pending = self
            .progress
            .as_ref()
            .map(Progress::pending)
            .unwrap_or_default();
        let mut groups: VecDeque<Vec<usize>> = self.framing.split(records, &pending).into();
        while let Some(group) = groups.pop_front() {
            let answer = self.send_group(records, &group).await;
            let progress = self.progress.as_mut().expect("set above");
            for (i, state) in answer.settled {
                progress.set(i, state);
            }
            if let Some(reason) = answer.rejected {
                progress.reject_reason.get_or_insert(reason);
            }
            match answer.then {
                Then::Next => {}
                // Front of the queue, first half first: the records keep their order.
                Then::Split => {
                    let (first, second) = halves(&group);
                    groups.push_front(second);
                    groups.push_front(first);
                }
                Then::Retry(error) => return Err(error),
            }
        }
        let progress = self.progress.take().expect("set above");
        match progress.count(State::Rejected) {
            0 => Ok(()),
            count => Err(TransportError::Rejected {
                count,
                reason: progress.reject_reason.unwrap_or_default(),
            }),
        }
    }

    /// One request with the records at `group`.
    async fn send_group(&mut self, records: &[Vec<u8>], group: &[usize]) -> GroupAnswer {
        let body = self.framing.body(records, group);
        let size = body.len();
        let (payload, encoding) = if self.gzip {
            (super::body::gzip(&body), Some("gzip"))
        } else {
            (body, None)
        };
        let resp = match self.client.post(&self.headers, payload, encoding).await {
            Ok(r) => r,
            Err(e) => return GroupAnswer::retry(e.to_string()),
        };
        let status = resp.status;
        let answer = || format!("HTTP {status}: {}", snippet(&resp.body));
        match status::of_request(status) {
            Verdict::Taken if self.mode == HttpMode::Ndjson => {
                GroupAnswer::all(group, State::Taken, None)
            }
            Verdict::Taken => match bulk::parse(&resp.body, group.len()) {
                Ok(outcomes) => self.settle_items(group, &outcomes),
                Err(e) => GroupAnswer::retry(e.to_string()),
            },
            // nginx answers 400 to a client that did not show the certificate it asked
            // for: nothing against the records, which wait for a client_cert.
            Verdict::Split
                if status == StatusCode::BAD_REQUEST
                    && self.client_auth.asked_without_certificate() =>
            {
                GroupAnswer::retry(format!(
                    "{} (the server asked for a client certificate and this output has none: set client_cert and client_key)",
                    answer()
                ))
            }
            Verdict::Split if group.len() > 1 => GroupAnswer {
                then: Then::Split,
                ..GroupAnswer::default()
            },
            // One record the collector will not take however it is sent.
            Verdict::Split | Verdict::Refuse => GroupAnswer::all(
                group,
                State::Rejected,
                Some(format!(
                    "{} (a request of one record, {size} bytes)",
                    answer()
                )),
            ),
            Verdict::Retry => match resp.retry_after {
                Some(after) if status::honours_retry_after(status) => {
                    GroupAnswer::then(Then::Retry(TransportError::Throttled {
                        reason: answer(),
                        after,
                    }))
                }
                _ => GroupAnswer::retry(answer()),
            },
        }
    }

    /// Sorts a `_bulk` answer's per-document outcomes.
    fn settle_items(&self, group: &[usize], outcomes: &[ItemOutcome]) -> GroupAnswer {
        let mut answer = GroupAnswer::default();
        let (mut retry, mut retry_status, mut rejected) = (0, 0, 0);
        let mut first_rejection = None;
        for (&i, outcome) in group.iter().zip(outcomes) {
            match outcome {
                ItemOutcome::Taken => answer.settled.push((i, State::Taken)),
                ItemOutcome::Retry(s) => {
                    retry += 1;
                    retry_status = *s;
                }
                ItemOutcome::Rejected(s, reason) => {
                    answer.settled.push((i, State::Rejected));
                    rejected += 1;
                    first_rejection.get_or_insert_with(|| format!("status {s}, {reason}"));
                }
            }
        }
        if let Some(first) = first_rejection {
            answer.rejected = Some(format!(
                "{rejected} documents refused by _bulk, first: {}",
                truncate(&first)
            ));
        }
        if retry > 0 {
            // Only the unsettled documents go again: the taken and refused ones are settled.
            answer.then = Then::Retry(TransportError::Retry(format!(
                "{retry} documents to send again (_bulk item status {retry_status})"
            )));
        }
        answer
    }

    /// Connections opened so far.
    #[cfg(test)]
    pub(crate) fn connects(&self) -> u64 {
        self.client.connects
    }
}

/// What one request settled, and what the rest of the batch does next.
#[derive(Default)]
struct GroupAnswer {
    settled: Vec<(usize, State)>,
    /// Why records were refused for good.
    rejected: Option<String>,
    then: Then,
}

/// What follows one request.
#[derive(Default)]
enum Then {
    /// The next request of the batch.
    #[default]
    Next,
    /// The same records again, in two requests.
    Split,
    /// Nothing until the worker's next attempt, which sends the unsettled records again.
    Retry(TransportError),
}

impl GroupAnswer {
    fn then(then: Then) -> Self {
        Self {
            then,
            ..Self::default()
        }
    }

    fn retry(why: String) -> Self {
        Self::then(Then::Retry(TransportError::Retry(why)))
    }

    fn all(group: &[usize], state: State, rejected: Option<String>) -> Self {
        Self {
            settled: group.iter().map(|&i| (i, state)).collect(),
            rejected,
            then: Then::Next,
        }
    }
}

/// `group` cut in two, the first half no longer than the second; `group` has at least two
/// records, so neither half is empty.
fn halves(group: &[usize]) -> (Vec<usize>, Vec<usize>) {
    let (first, second) = group.split_at(group.len() / 2);
    (first.to_vec(), second.to_vec())
}

fn snippet(body: &[u8]) -> String {
    truncate(&String::from_utf8_lossy(body))
}

fn truncate(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(LOGGED_BODY) {
        Some((cut, _)) => format!("{}… ({} bytes)", &text[..cut], text.len()),
        None => text.to_string(),
    }
}

impl Transport for HttpTransport {
    fn send<'a>(&'a mut self, records: &'a [Vec<u8>]) -> SendFuture<'a> {
        Box::pin(self.send_batch(records))
    }

    fn max_batch(&self) -> usize {
        self.framing.max_records
    }

    fn describe(&self) -> String {
        let mode = match self.mode {
            HttpMode::Ndjson => "NDJSON",
            HttpMode::ElasticsearchBulk => "Elasticsearch _bulk",
        };
        format!(
            "{mode} to {}{}",
            self.endpoint.display(),
            if self.gzip { " (gzip)" } else { "" }
        )
    }
}
