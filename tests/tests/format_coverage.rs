//! The coverage table of docs/formats.md ("Field coverage"): every native field of
//! docs/events.schema.json has a row per event kind, and each format's cell either names that
//! format's fields (checked against the spec fixture) or says `none:` and why. The failure
//! names the field and the cell, so that whoever adds a native field adds its row.
//!
//! Needs nothing but the repository: no root, no agent.
// The encoders test reads the rest of the fixture.
#[allow(dead_code)]
#[path = "encoders/fixture.rs"]
mod fixture;

use anyhow::{ensure, Context, Result};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const FORMATS: [&str; 4] = ["ecs", "ocsf", "zeek", "sysmon"];
/// Event kinds: the schema's `$defs` and the tables' `###` headings.
const KINDS: [&str; 4] = ["flow", "rate_limited", "dns_query", "process"];

fn repo_file(rel: &str) -> Result<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel);
    std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
}

/// Native field names of one kind, in the schema's order.
fn native_fields(schema: &Value, kind: &str) -> Result<Vec<String>> {
    let props = schema["$defs"][kind]["properties"]
        .as_object()
        .with_context(|| format!("no $defs/{kind}/properties in the schema"))?;
    Ok(props.keys().cloned().collect())
}

/// kind -> native field -> the four format cells, from the "Field coverage" section.
fn coverage_tables(md: &str) -> Result<BTreeMap<String, BTreeMap<String, Vec<String>>>> {
    let section = md
        .split("\n## ")
        .find(|s| s.starts_with("Field coverage"))
        .context("docs/formats.md has no \"## Field coverage\" section")?;
    let mut tables = BTreeMap::new();
    let mut kind = None;
    for line in section.lines() {
        if let Some(h) = line.strip_prefix("### ") {
            kind = Some(h.trim().to_string());
            continue;
        }
        let (Some(kind), Some(row)) = (&kind, line.strip_prefix("| `")) else {
            continue;
        };
        let cells: Vec<String> = row.split(" | ").map(|c| c.trim().to_string()).collect();
        let field = cells[0].trim_end_matches('`').to_string();
        let formats = cells[1..]
            .iter()
            .map(|c| c.trim_end_matches('|').trim().to_string())
            .collect();
        tables
            .entry(kind.clone())
            .or_insert_with(BTreeMap::new)
            .insert(field, formats);
    }
    Ok(tables)
}

/// The backquoted names of a cell.
fn names(cell: &str) -> impl Iterator<Item = &str> {
    cell.split('`').skip(1).step_by(2)
}

/// Whether `name` looks like a field name (not a value such as `egress`).
fn is_identifier(name: &str) -> bool {
    name.chars()
        .all(|c| c.is_ascii_alphanumeric() || "_.@".contains(c))
}

/// Whether an OCSF attribute path exists in `class` of the fixture.
fn ocsf_path(class: &str, path: &str) -> bool {
    let o = fixture::ocsf();
    let mut scope = format!("class/{class}");
    for part in path.split('.') {
        let Some(a) = o.scopes.get(&scope).and_then(|s| s.attrs.get(part)) else {
            return false;
        };
        scope = format!("object/{}", a.ty);
    }
    true
}

/// Whether a name is a field of the format (for the event kind).
fn in_format(format: &str, kind: &str, name: &str) -> bool {
    match format {
        "ecs" => name.starts_with("flow_agent.") || fixture::ecs().contains_key(name),
        "ocsf" => {
            let class = match kind {
                "dns_query" => "dns_activity",
                "process" => "process_activity",
                _ => "network_activity",
            };
            name.starts_with("unmapped.") || ocsf_path(class, name)
        }
        "zeek" => fixture::zeek().fields.iter().any(|f| f.name == name),
        _ => {
            let s = fixture::sysmon();
            s.system.iter().any(|(e, _)| *e == name)
                || s.events
                    .values()
                    .any(|e| e.data.iter().any(|(d, _)| *d == name))
        }
    }
}

/// The problems of one cell.
fn check_cell(format: &str, kind: &str, cell: &str, native: &BTreeSet<String>) -> Vec<String> {
    if let Some(reason) = cell.strip_prefix("none:") {
        return if reason.split_whitespace().count() < 3 {
            vec![format!("`none:` without a reason: {cell:?}")]
        } else {
            Vec::new()
        };
    }
    let mut p = Vec::new();
    let mut own = 0;
    for name in names(cell).filter(|n| is_identifier(n)) {
        if in_format(format, kind, name) {
            own += 1;
        } else if !native.contains(name) {
            p.push(format!(
                "`{name}` is neither a {format} field (tests/fixtures/specs) nor a native field"
            ));
        }
    }
    if own == 0 {
        p.push(format!(
            "names no {format} field and gives no `none:` reason: {cell:?}"
        ));
    }
    p
}

#[test]
fn every_native_field_has_a_place_or_a_reason_in_every_format() -> Result<()> {
    let schema: Value = serde_json::from_str(&repo_file("docs/events.schema.json")?)?;
    let tables = coverage_tables(&repo_file("docs/formats.md")?)?;
    let mut problems = Vec::new();
    for kind in KINDS {
        let fields = native_fields(&schema, kind)?;
        let native: BTreeSet<String> = fields.iter().cloned().collect();
        let Some(table) = tables.get(kind) else {
            problems.push(format!(
                "docs/formats.md, Field coverage: no \"### {kind}\" table"
            ));
            continue;
        };
        for field in &fields {
            let Some(cells) = table.get(field) else {
                problems.push(format!(
                    "{kind} field `{field}` has no row in docs/formats.md's Field coverage \
                     table \"### {kind}\": add `| `{field}` | ecs | ocsf | zeek | sysmon |`, \
                     each cell the format's fields or `none:` and the reason"
                ));
                continue;
            };
            if cells.len() != FORMATS.len() {
                problems.push(format!(
                    "{kind} field `{field}`: {} cells, want one per format {FORMATS:?}",
                    cells.len()
                ));
                continue;
            }
            for (format, cell) in FORMATS.iter().zip(cells) {
                for p in check_cell(format, kind, cell, &native) {
                    problems.push(format!("{kind} field `{field}`, {format}: {p}"));
                }
            }
        }
        for stale in table.keys().filter(|f| !native.contains(*f)) {
            problems.push(format!(
                "Field coverage \"### {kind}\" has a row for `{stale}`, which \
                 docs/events.schema.json's {kind} does not have"
            ));
        }
    }
    ensure!(
        problems.is_empty(),
        "{} problem(s) in docs/formats.md's Field coverage:\n{}",
        problems.len(),
        problems.join("\n")
    );
    Ok(())
}

/// The test above notices what it must: a field without a row, a cell without a field or
/// reason, a name that is no field of its format.
#[test]
fn coverage_check_finds_what_is_missing() -> Result<()> {
    let native: BTreeSet<String> = ["start_time".to_string()].into();
    assert!(check_cell("ecs", "flow", "`event.start`", &native).is_empty());
    assert!(check_cell("ecs", "flow", "`flow_agent.x`", &native).is_empty());
    assert!(!check_cell("ecs", "flow", "`event.begin`", &native).is_empty());
    assert!(!check_cell("ecs", "flow", "", &native).is_empty());
    assert!(!check_cell("ecs", "flow", "none:", &native).is_empty());
    assert!(check_cell("zeek", "flow", "`ts` without `start_time`", &native).is_empty());
    assert!(!check_cell("zeek", "flow", "`start_time`", &native).is_empty());
    assert!(check_cell("ocsf", "flow", "`actor.process.ptid`", &native).is_empty());
    assert!(!check_cell("ocsf", "flow", "`actor.process.nope`", &native).is_empty());
    assert!(check_cell("ocsf", "dns_query", "`query.hostname`", &native).is_empty());
    assert!(check_cell("sysmon", "flow", "`DestinationHostname`", &native).is_empty());
    let md = "# x\n## Field coverage\n### flow\n| native field | ecs | ocsf | zeek | sysmon |\n\
              |---|---|---|---|---|\n| `a` | `b` | `c` | none: no such thing | `d` |\n";
    let t = coverage_tables(md)?;
    assert_eq!(t["flow"]["a"], ["`b`", "`c`", "none: no such thing", "`d`"]);
    Ok(())
}
