//! Secrets out of the printed configuration (`flow-agent config`): passwords, HTTP header
//! values and secret-looking query parameters of URLs become `"<redacted>"`. The walk goes
//! over the printed TOML, not the structs, so that a secret option added later under a
//! telling name (`password`, `token`, ...) is hidden without anyone remembering this file.
//! Paths are not secrets (a TLS key's path is printed; the key is in the file).
use toml_edit::{DocumentMut, InlineTable, Item, Table, Value};

/// What a secret is printed as.
pub(crate) const REDACTED: &str = "<redacted>";

/// Whether an option, query parameter or header name says its value is a secret:
/// `password`, `api_key`, `X-Auth-Token`, `access_token`, `sig`, ... `key`, `sig` and `jwt`
/// count as whole words only (`api_key`, not `keyword`); options that name files
/// (`client_key`) are not redacted whatever their name.
pub(crate) fn looks_secret(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    const PARTS: [&str; 9] = [
        "pass",
        "secret",
        "token",
        "auth",
        "credential",
        "cookie",
        "session",
        "signature",
        "apikey",
    ];
    const WORDS: [&str; 3] = ["key", "sig", "jwt"];
    PARTS.iter().any(|p| lower.contains(p))
        || lower
            .split(|c: char| !c.is_ascii_alphanumeric())
            .any(|w| WORDS.contains(&w))
}

/// Options whose value is a secret even though the name alone would not say so everywhere:
/// every value of a `headers` table.
const SECRET_TABLES: [&str; 1] = ["headers"];

/// Paths are never secrets, whatever they are called (`client_key`).
const NOT_SECRET: [&str; 3] = ["client_key", "client_cert", "ca_file"];

/// The configuration TOML `text` with every secret replaced by [`REDACTED`].
pub(crate) fn redact(text: &str) -> String {
    let Ok(mut doc) = text.parse::<DocumentMut>() else {
        // The agent's own serialization always parses; never print what could not be checked.
        return String::new();
    };
    table(doc.as_table_mut());
    doc.to_string()
}

fn table(t: &mut Table) {
    for (key, item) in t.iter_mut() {
        self::item(key.get(), item);
    }
}

fn item(key: &str, item: &mut Item) {
    match item {
        Item::Table(t) if SECRET_TABLES.contains(&key) => {
            for (_, v) in t.iter_mut() {
                if let Some(v) = v.as_value_mut() {
                    all(v);
                }
            }
        }
        Item::Table(t) => table(t),
        Item::ArrayOfTables(a) => a.iter_mut().for_each(table),
        Item::Value(v) => value(key, v),
        Item::None => {}
    }
}

fn inline(t: &mut InlineTable) {
    for (key, v) in t.iter_mut() {
        value(key.get(), v);
    }
}

fn value(key: &str, v: &mut Value) {
    match v {
        Value::InlineTable(t) if SECRET_TABLES.contains(&key) => {
            t.iter_mut().for_each(|(_, v)| all(v));
        }
        Value::InlineTable(t) => inline(t),
        Value::Array(a) => a.iter_mut().for_each(|v| value(key, v)),
        // A proxy URL may carry the proxy's user and password.
        Value::String(s) if key == "url" || key == "proxy" => {
            let url = redact_url(s.value());
            if url != *s.value() {
                replace(v, &url);
            }
        }
        Value::String(_) if looks_secret(key) && !NOT_SECRET.contains(&key) => all(v),
        _ => {}
    }
}

/// Every string in `v` (a header value, or a table or array of them) redacted.
fn all(v: &mut Value) {
    match v {
        Value::String(s) if s.value().is_empty() => {}
        Value::String(_) => replace(v, REDACTED),
        Value::InlineTable(t) => t.iter_mut().for_each(|(_, v)| all(v)),
        Value::Array(a) => a.iter_mut().for_each(all),
        _ => {}
    }
}

fn replace(v: &mut Value, text: &str) {
    let decor = v.decor().clone();
    *v = Value::from(text);
    *v.decor_mut() = decor;
}

/// A URL with the password of its user part and the values of secret-looking query
/// parameters (`?api_key=...&index=flows` → `?api_key=<redacted>&index=flows`) redacted.
pub(crate) fn redact_url(url: &str) -> String {
    let (before_fragment, fragment) = match url.split_once('#') {
        Some((u, f)) => (u, Some(f)),
        None => (url, None),
    };
    let (base, query) = match before_fragment.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (before_fragment, None),
    };
    let mut out = redact_userinfo(base);
    if let Some(q) = query {
        let params: Vec<String> = q
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((name, v)) if !v.is_empty() && looks_secret(name) => {
                    format!("{name}={REDACTED}")
                }
                _ => p.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

/// `scheme://user:password@host/...` → `scheme://user:<redacted>@host/...` (the agent
/// refuses such URLs, but a printed configuration must not depend on that). Without a
/// scheme (`user:password@proxy:3128`, as proxy variables are often written) the same.
fn redact_userinfo(base: &str) -> String {
    let (scheme, rest) = match base.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), base),
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            let secret = if userinfo.contains(':') {
                format!(":{REDACTED}")
            } else {
                String::new()
            };
            format!("{scheme}{user}{secret}@{host}{path}")
        }
        None => base.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names() {
        for name in [
            "password",
            "Authorization",
            "Proxy-Authorization",
            "X-Api-Key",
            "DD-API-KEY",
            "apikey",
            "access_token",
            "X-Auth-Token",
            "sig",
            "Cookie",
            "client_secret",
            "key",
        ] {
            assert!(looks_secret(name), "{name}");
        }
        for name in [
            "Content-Type",
            "X-Scope-OrgID",
            "index",
            "user",
            "url",
            "monkey",
            "keyword",
            "mode",
            "pipeline",
        ] {
            assert!(!looks_secret(name), "{name}");
        }
    }

    #[test]
    fn urls_keep_everything_but_secrets() {
        assert_eq!(
            redact_url("https://es:9200/flows/_bulk?pipeline=geo&api_key=abc&x#frag"),
            "https://es:9200/flows/_bulk?pipeline=geo&api_key=<redacted>&x#frag"
        );
        assert_eq!(
            redact_url("http://u:hunter2@h:1/p?token="),
            "http://u:<redacted>@h:1/p?token="
        );
        assert_eq!(redact_url("http://u@h/p"), "http://u@h/p");
        assert_eq!(redact_url("http://h/a@b"), "http://h/a@b");
        assert_eq!(redact_url("not a url"), "not a url");
        assert_eq!(redact_url("u:pw@proxy:3128"), "u:<redacted>@proxy:3128");
    }

    #[test]
    fn redacts_nested_tables_inline_tables_and_arrays() {
        let text = r#"
[agent]
log_level = "info"

[[outputs]]
format = "ecs"

[outputs.http]
url = "http://127.0.0.1:8080/in?access_token=t0k3n&tenant=a"
user = "elastic"
password = "hunter2"
headers = { Authorization = "Bearer s3cr3t", "Content-Type" = "application/json" }

[[outputs]]
[outputs.syslog]
client_key = "/etc/flow-agent/key.pem"
ca_file = "/etc/ssl/ca.pem"

[[outputs]]
[outputs.http]
url = "https://collector/"
proxy = "http://flow:pr0xy@proxy.example:3128"
[outputs.http.headers]
X-Api-Key = "k3y"
Empty = ""
"#;
        let out = redact(text);
        for secret in [
            "t0k3n",
            "hunter2",
            "s3cr3t",
            "k3y",
            "application/json",
            "pr0xy",
        ] {
            assert!(!out.contains(secret), "{secret} in\n{out}");
        }
        for kept in [
            "tenant=a",
            "user = \"elastic\"",
            "password = \"<redacted>\"",
            "Authorization = \"<redacted>\"",
            "X-Api-Key = \"<redacted>\"",
            "Empty = \"\"",
            "client_key = \"/etc/flow-agent/key.pem\"",
            "ca_file = \"/etc/ssl/ca.pem\"",
            "proxy = \"http://flow:<redacted>@proxy.example:3128\"",
            "log_level = \"info\"",
        ] {
            assert!(out.contains(kept), "{kept} not in\n{out}");
        }
        // Still a TOML document with the same shape.
        let doc: toml::Table = toml::from_str(&out).unwrap();
        assert_eq!(doc["outputs"].as_array().unwrap().len(), 3);
    }
}
