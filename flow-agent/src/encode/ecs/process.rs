//! A `process_start` or `process_end` event as an ECS document: `event.category: process`,
//! `event.type: start|end`, the process as flow documents write it (the same fragments, so
//! `process.entity_id` joins them), and `process.exit_code` at the end.
use super::{host_fragment, related_user, CUSTOM, RELATED_USER};
use super::{EcsEncoder, CONTAINER, MODULE, PARENT_USER_GROUP, PROCESS};
use crate::{
    encode::json::Json,
    event::{ProcessAction, ProcessEvent},
};

impl EcsEncoder {
    pub(super) fn process_event(&mut self, ev: &ProcessEvent, out: &mut Vec<u8>) {
        let p = self.processes.get(&ev.process, super::process_fragments);
        let host = self.hosts.get(&ev.host, host_fragment);
        let mut w = Json::new(out);
        super::head(&mut w, ev.time);
        event(&mut w, ev);
        w.splice(p.get(PROCESS));
        w.opt("exit_code", ev.exit.map(|e| e.code));
        w.splice(p.get(PARENT_USER_GROUP));
        w.splice(host.get(0));
        w.splice(p.get(CONTAINER));
        if related_user(&ev.process).is_some() {
            w.object("related");
            w.splice(p.get(RELATED_USER));
            w.end();
        }
        w.object("flow_agent");
        w.opt("exit_signal", ev.exit.and_then(|e| e.signal));
        w.splice(p.get(CUSTOM));
        w.end();
        w.end();
    }
}

/// `event`: `start` at exec, `end` at exit.
fn event(w: &mut Json, ev: &ProcessEvent) {
    w.object("event");
    w.name("kind", "event");
    w.array("category");
    w.element();
    w.plain_str("process");
    w.end_array();
    w.array("type");
    w.element();
    w.plain_str(match ev.action {
        ProcessAction::Start => "start",
        ProcessAction::End => "end",
    });
    w.end_array();
    w.name("action", ev.action.as_str());
    w.name("module", MODULE);
    w.name("dataset", "flow_agent.process");
    if ev.action == ProcessAction::End {
        w.time("end", ev.time);
    }
    // Nanoseconds.
    w.opt("duration", ev.duration_ns);
    w.end();
}
