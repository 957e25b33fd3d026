//! The spec fixture (tests/fixtures/specs): the published specifications' facts, derived by
//! `cargo xtask spec-fixture` (ECS, OCSF) or written down from the public sources (Zeek's
//! Conn::Info, Sysmon's manifest). The checks of every format read them from here.
use std::collections::BTreeMap;
use std::sync::OnceLock;

const ECS: &str = include_str!("../../fixtures/specs/ecs-9.4.0.tsv");
const OCSF: &str = include_str!("../../fixtures/specs/ocsf-1.8.0.tsv");
const ZEEK: &str = include_str!("../../fixtures/specs/zeek-conn.tsv");
const SYSMON: &str = include_str!("../../fixtures/specs/sysmon.tsv");

/// The lines of a fixture file, split at tabs, comments left out.
fn rows(text: &'static str) -> impl Iterator<Item = Vec<&'static str>> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split('\t').collect())
}

/// An ECS field: its type and whether ECS normalizes it as an array.
pub struct EcsField {
    pub ty: &'static str,
    pub array: bool,
}

pub fn ecs() -> &'static BTreeMap<&'static str, EcsField> {
    static FIELDS: OnceLock<BTreeMap<&str, EcsField>> = OnceLock::new();
    FIELDS.get_or_init(|| {
        rows(ECS)
            .map(|r| {
                let field = EcsField {
                    ty: r[1],
                    array: r.get(2) == Some(&"array"),
                };
                (r[0], field)
            })
            .collect()
    })
}

/// An OCSF attribute of a class or object.
#[derive(Debug)]
pub struct OcsfAttr {
    pub ty: &'static str,
    pub requirement: &'static str,
    pub array: bool,
    /// The profile that adds it, if any.
    pub profile: Option<&'static str>,
    pub deprecated: Option<&'static str>,
    /// The attribute holding the caption of this one's enum value.
    pub sibling: Option<&'static str>,
    /// Enum value (an integer's digits, or a string) -> caption.
    pub values: BTreeMap<&'static str, &'static str>,
}

/// One class (`class/<name>`) or object (`object/<name>`).
#[derive(Debug, Default)]
pub struct OcsfScope {
    pub attrs: BTreeMap<&'static str, OcsfAttr>,
    /// (`at_least_one` | `just_one`, attributes).
    pub constraints: Vec<(&'static str, Vec<&'static str>)>,
    pub deprecated: Option<&'static str>,
}

pub struct Ocsf {
    pub scopes: BTreeMap<String, OcsfScope>,
    /// Scalar type -> its base type (`hostname_t` -> `string_t`).
    pub types: BTreeMap<&'static str, &'static str>,
    /// Class uid -> (name, category uid, caption).
    pub classes: BTreeMap<i64, (&'static str, i64, &'static str)>,
}

fn dash(s: &'static str) -> Option<&'static str> {
    (s != "-").then_some(s)
}

pub fn ocsf() -> &'static Ocsf {
    static SCHEMA: OnceLock<Ocsf> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let mut o = Ocsf {
            scopes: BTreeMap::new(),
            types: BTreeMap::new(),
            classes: BTreeMap::new(),
        };
        for r in rows(OCSF) {
            match r[0] {
                "type" => {
                    o.types.insert(r[1], r[2]);
                }
                "class" => {
                    let uid = r[2].parse().expect("class uid");
                    o.classes
                        .insert(uid, (r[1], r[3].parse().expect("category"), r[4]));
                }
                "attr" => {
                    let attr = OcsfAttr {
                        ty: r[3],
                        requirement: r[4],
                        array: r[5] == "1",
                        profile: dash(r[6]),
                        deprecated: dash(r[7]),
                        sibling: dash(r[8]),
                        values: BTreeMap::new(),
                    };
                    o.scopes
                        .entry(r[1].to_string())
                        .or_default()
                        .attrs
                        .insert(r[2], attr);
                }
                "enum" => {
                    let scope = o.scopes.get_mut(r[1]).expect("enum before its attribute");
                    let attr = scope.attrs.get_mut(r[2]).expect("enum of an attribute");
                    attr.values.insert(r[3], r[4]);
                }
                "constraint" => {
                    let scope = o.scopes.entry(r[1].to_string()).or_default();
                    scope.constraints.push((r[2], r[3].split(',').collect()));
                }
                "object" => {
                    o.scopes
                        .entry(format!("object/{}", r[1]))
                        .or_default()
                        .deprecated = dash(r[2]);
                }
                other => panic!("ocsf fixture: unknown line kind {other}"),
            }
        }
        o
    })
}

/// A conn.log field: its Zeek type and whether it is `&optional`.
pub struct ZeekField {
    pub name: &'static str,
    pub ty: &'static str,
    pub optional: bool,
}

pub struct Zeek {
    /// In Conn::Info's order.
    pub fields: Vec<ZeekField>,
    pub protos: Vec<&'static str>,
    pub conn_states: Vec<&'static str>,
    /// History letters in lower case (upper case: the originator's).
    pub history: Vec<&'static str>,
}

pub fn zeek() -> &'static Zeek {
    static CONN: OnceLock<Zeek> = OnceLock::new();
    CONN.get_or_init(|| {
        let mut z = Zeek {
            fields: Vec::new(),
            protos: Vec::new(),
            conn_states: Vec::new(),
            history: Vec::new(),
        };
        for r in rows(ZEEK) {
            match r[0] {
                "field" => z.fields.push(ZeekField {
                    name: r[1],
                    ty: r[2],
                    optional: r[3] == "optional",
                }),
                "proto" => z.protos.push(r[1]),
                "conn_state" => z.conn_states.push(r[1]),
                "history" => z.history.push(r[1]),
                other => panic!("zeek fixture: unknown line kind {other}"),
            }
        }
        z
    })
}

/// One Sysmon event of the manifest.
pub struct SysmonEvent {
    pub version: &'static str,
    /// Data names and inTypes, in the manifest's order.
    pub data: Vec<(&'static str, &'static str)>,
}

pub struct Sysmon {
    pub events: BTreeMap<&'static str, SysmonEvent>,
    /// System elements in order, with their attributes (`Name=value` for a constant one) or
    /// `=text` for constant text.
    pub system: Vec<(&'static str, Vec<&'static str>)>,
}

pub fn sysmon() -> &'static Sysmon {
    static MANIFEST: OnceLock<Sysmon> = OnceLock::new();
    MANIFEST.get_or_init(|| {
        let mut s = Sysmon {
            events: BTreeMap::new(),
            system: Vec::new(),
        };
        for r in rows(SYSMON) {
            match r[0] {
                "event" => {
                    let ev = SysmonEvent {
                        version: r[2],
                        data: Vec::new(),
                    };
                    s.events.insert(r[1], ev);
                }
                "data" => s
                    .events
                    .get_mut(r[1])
                    .expect("data before its event")
                    .data
                    .push((r[2], r[3])),
                "system" => {
                    let attrs = r.get(2).map(|a| a.split(',').collect()).unwrap_or_default();
                    s.system.push((r[1], attrs));
                }
                other => panic!("sysmon fixture: unknown line kind {other}"),
            }
        }
        s
    })
}
