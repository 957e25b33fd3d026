//! A `process_start` or `process_end` event as an OCSF Process Activity event (class 1007):
//! activity 1 `Launch` at exec, 2 `Terminate` at exit (with `exit_code`). Both are reflexive:
//! the process is the `actor` (the same fragments as flows', so `actor.process.uid` joins
//! them) and the `process`.
use super::{
    host_fragments, process::Actor, process_fragments, OcsfEncoder, ACTOR_HEAD, ACTOR_TAIL, DEVICE,
    HOST_OBSERVABLE, OBSERVABLES, OCSF_VERSION, PRODUCT_JSON, PROFILES, UNMAPPED,
};
use crate::{
    encode::{json::Json, time},
    event::{ProcessAction, ProcessEvent},
};

pub(super) const PROCESS_CLASS_UID: u32 = 1007;
/// System Activity.
const SYSTEM_CATEGORY_UID: u32 = 1;

impl OcsfEncoder {
    pub(super) fn process_event(&mut self, ev: &ProcessEvent, out: &mut Vec<u8>) {
        let p = self.processes.get(&ev.process, process_fragments);
        let host = self.hosts.get(&ev.host, host_fragments);
        let (id, caption) = match ev.action {
            ProcessAction::Start => (1u32, "Launch"),
            ProcessAction::End => (2, "Terminate"),
        };
        let mut w = Json::new(out);
        w.begin();
        w.field("activity_id", &id);
        w.name("activity_name", caption);
        w.field("category_uid", &SYSTEM_CATEGORY_UID);
        w.name("category_name", "System Activity");
        w.field("class_uid", &PROCESS_CLASS_UID);
        w.name("class_name", "Process Activity");
        w.field("type_uid", &(PROCESS_CLASS_UID * 100 + id));
        w.field("type_name", &format!("Process Activity: {caption}"));
        w.field("severity_id", &1u32);
        w.name("severity", "Informational");
        w.field("time", &ev.time.millis());
        w.field("timezone_offset", &0i32);
        w.opt(
            "duration",
            ev.duration_ns
                .map(|ns| (time::seconds(ns) * 1000.0).round() as i64),
        );
        let name = ev
            .process
            .image_path
            .as_deref()
            .unwrap_or(ev.process.name());
        w.field(
            "message",
            &format!("{caption} {name} (pid {})", ev.process.pid),
        );
        w.object("metadata");
        w.name("version", OCSF_VERSION);
        w.key("product");
        w.raw(&PRODUCT_JSON);
        w.field("profiles", &PROFILES);
        w.opt("correlation_uid", ev.process.entity_id.as_deref());
        w.time("original_time", ev.time);
        w.name("log_name", "processes");
        w.end();
        w.field("process", &Actor::of(&ev.process, None).process);
        w.opt("exit_code", ev.exit.map(|e| e.code));
        w.splice(p.get(ACTOR_HEAD));
        w.splice(p.get(ACTOR_TAIL));
        w.splice(host.get(DEVICE));
        w.array("observables");
        w.splice(host.get(HOST_OBSERVABLE));
        w.splice(p.get(OBSERVABLES));
        w.end_array();
        w.object("unmapped");
        w.name("event_action", ev.action.as_str());
        w.opt("exit_signal", ev.exit.and_then(|e| e.signal));
        w.splice(p.get(UNMAPPED));
        w.end();
        w.end();
    }
}
