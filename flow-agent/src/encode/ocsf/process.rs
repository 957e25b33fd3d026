//! `actor`: the process an event names, as OCSF process, file and user objects; the same
//! mapping for flow, DNS and rate-limit events.
use serde::Serialize;

use super::display;
use crate::{
    encode::common,
    event::{ProcessIdentity, Sha256},
};

#[derive(Serialize)]
pub(crate) struct Actor<'a> {
    pub(crate) process: Process<'a>,
    pub(crate) user: User<'a>,
}

#[derive(Serialize)]
pub(crate) struct Process<'a> {
    pub(crate) pid: u32,
    /// OCSF 1.6 deprecated `tid` for `ptid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) ptid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) uid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) name: Option<&'a str>,
    /// OCSF: the empty string when the command line is unknown.
    pub(crate) cmd_line: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) created_time: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) file: Option<File<'a>>,
    pub(crate) user: User<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) parent_process: Option<Parent<'a>>,
    /// The ancestors the agent names (`[enrich] ancestry_depth`), the parent first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) ancestry: Vec<Entity<'a>>,
}

/// OCSF `process_entity`: one ancestor.
#[derive(Serialize)]
pub(crate) struct Entity<'a> {
    pub(crate) pid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) uid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) path: Option<&'a str>,
}

#[derive(Serialize)]
pub(crate) struct Parent<'a> {
    pub(crate) pid: u32,
    /// The parent's `process_entity_id`, as the child's is its `uid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) uid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) cmd_line: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) file: Option<File<'a>>,
}

#[derive(Serialize)]
pub(crate) struct File<'a> {
    pub(crate) name: &'a str,
    pub(crate) path: &'a str,
    pub(crate) type_id: u32,
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) is_deleted: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) hashes: Option<[Fingerprint; 1]>,
}

/// OCSF `fingerprint`: a digest and its algorithm.
#[derive(Serialize)]
pub(crate) struct Fingerprint {
    pub(crate) algorithm_id: u8,
    pub(crate) algorithm: &'static str,
    pub(crate) value: Sha256,
}

impl Fingerprint {
    fn sha256(value: Sha256) -> Self {
        Fingerprint {
            algorithm_id: 3,
            algorithm: "SHA-256",
            value,
        }
    }
}

impl<'a> File<'a> {
    fn executable(path: &'a str, is_deleted: Option<bool>) -> Self {
        File {
            name: common::basename(path),
            path,
            type_id: 1,
            kind: "Regular File",
            is_deleted,
            hashes: None,
        }
    }
}

#[derive(Serialize, Clone)]
pub(crate) struct User<'a> {
    /// OCSF: a string.
    #[serde(serialize_with = "display")]
    pub(crate) uid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) name: Option<&'a str>,
}

impl<'a> Actor<'a> {
    /// `ptid`: the event's acting thread, when it has one.
    pub(crate) fn of(p: &'a ProcessIdentity, ptid: Option<u32>) -> Self {
        let user = User {
            uid: p.uid,
            name: p.user.as_deref(),
        };
        let name = p.name();
        let process = Process {
            pid: p.pid,
            ptid,
            uid: p.entity_id.as_deref(),
            name: (!name.is_empty()).then_some(name),
            cmd_line: p.command_line.as_deref().unwrap_or(""),
            created_time: p.start_time.map(|t| t.millis()),
            file: p.image_path.as_deref().map(|path| File {
                hashes: p.image_sha256.map(|d| [Fingerprint::sha256(d)]),
                ..File::executable(path, p.image_deleted)
            }),
            user: user.clone(),
            parent_process: (p.ppid != 0).then(|| Parent {
                pid: p.ppid,
                uid: p.parent_entity_id.as_deref(),
                cmd_line: p.parent_command_line.as_deref(),
                file: p
                    .parent_exe
                    .as_deref()
                    .map(|path| File::executable(path, None)),
            }),
            ancestry: p
                .ancestors
                .iter()
                .map(|a| Entity {
                    pid: a.pid,
                    uid: a.entity_id.as_deref(),
                    path: a.image_path.as_deref(),
                })
                .collect(),
        };
        Actor { process, user }
    }
}
