//! `actor`: the process the native event names, as OCSF process, file and user objects.
use serde::Serialize;

use crate::encode::{common, time};
use crate::flows::FlowEvent;

#[derive(Serialize)]
pub struct Actor<'a> {
    pub process: Process<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<User<'a>>,
}

#[derive(Serialize)]
pub struct Process<'a> {
    pub pid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    /// OCSF: the empty string when the command line is unknown.
    pub cmd_line: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_time: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<File<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<User<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_process: Option<Parent<'a>>,
}

#[derive(Serialize)]
pub struct Parent<'a> {
    pub pid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<File<'a>>,
}

#[derive(Serialize)]
pub struct File<'a> {
    pub name: &'a str,
    pub path: &'a str,
    pub type_id: u32,
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_deleted: Option<bool>,
}

impl<'a> File<'a> {
    fn executable(path: &'a str, is_deleted: Option<bool>) -> Self {
        File {
            name: common::basename(path),
            path,
            type_id: 1,
            kind: "Regular File",
            is_deleted,
        }
    }
}

#[derive(Serialize, Clone)]
pub struct User<'a> {
    pub uid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
}

impl<'a> Actor<'a> {
    /// None when the event names no process.
    pub fn of(ev: &'a FlowEvent) -> Option<Self> {
        let pid = ev.pid?;
        let user = ev.uid.map(|uid| User {
            uid: uid.to_string(),
            name: ev.user.as_deref(),
        });
        let process = Process {
            pid,
            tid: ev.tid,
            uid: ev.process_entity_id.as_deref(),
            name: common::process_name(ev),
            cmd_line: ev.command_line.as_deref().unwrap_or(""),
            created_time: ev
                .process_start_time
                .as_deref()
                .and_then(time::epoch_millis),
            file: ev
                .image_path
                .as_deref()
                .map(|p| File::executable(p, ev.image_deleted)),
            user: user.clone(),
            parent_process: ev.ppid.map(|pid| Parent {
                pid,
                file: ev.parent_exe.as_deref().map(|p| File::executable(p, None)),
            }),
        };
        Some(Actor { process, user })
    }
}
