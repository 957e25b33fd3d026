//! `process_start` and `process_end` events (`[enrich] process_events`): one at each exec and
//! each exit, naming the process as its flows do (the same identity, the same entity id).
//!
//! The kernel writes an exec's credentials right after its exec record, so a start waits for
//! that record (or for whatever record comes next) before it is built. Starts are built before
//! any later record's flow event is named, so a process's start is written before its flows.
use std::sync::Arc;

use flow_common::{ExecRecord, ExitRecord, Task};

use super::{identity::Identities, process::Process};
use crate::{
    clock::BootClock,
    event::{ExitStatus, HostInfo, ProcessAction, ProcessEvent},
};

/// Process events held between two takes; more are dropped and counted.
const MAX_PENDING: usize = 8192;

#[derive(Default)]
pub(crate) struct ProcessEvents {
    /// The last exec's task and kernel time, until its credentials came.
    exec: Option<(Task, u64)>,
    events: Vec<ProcessEvent>,
    /// Dropped because too many were waiting, since start.
    pub(crate) dropped: u64,
    /// Of them, those already logged.
    dropped_logged: u64,
}

impl ProcessEvents {
    pub(crate) fn exec(
        &mut self,
        r: &ExecRecord,
        ids: &mut Identities,
        clock: &BootClock,
        host: &Arc<HostInfo>,
    ) {
        self.flush(ids, clock, host);
        self.exec = Some((r.task, r.header.ts_ns));
    }

    /// The waiting start, built with the process table as it now stands.
    pub(crate) fn flush(&mut self, ids: &mut Identities, clock: &BootClock, host: &Arc<HostInfo>) {
        let Some((task, ts)) = self.exec.take() else {
            return;
        };
        if let Some(process) = ids.of(&task, clock) {
            self.push(ProcessEvent {
                time: clock.wall(ts),
                action: ProcessAction::Start,
                process,
                exit: None,
                duration_ns: None,
                host: host.clone(),
            });
        }
    }

    /// A `process_end`; call before the table learns of the exit.
    pub(crate) fn exit(
        &mut self,
        r: &ExitRecord,
        ids: &mut Identities,
        clock: &BootClock,
        host: &Arc<HostInfo>,
    ) {
        self.flush(ids, clock, host);
        let task = match ids.processes.lookup(r.pid, r.start_ns) {
            Some(p) => task_of(&p),
            None => Task {
                pid: r.pid,
                tid: r.pid,
                start_ns: r.start_ns,
                ..Task::default()
            },
        };
        let Some(process) = ids.of(&task, clock) else {
            return;
        };
        let ts = r.header.ts_ns;
        self.push(ProcessEvent {
            time: clock.wall(ts),
            action: ProcessAction::End,
            process,
            exit: Some(ExitStatus::of_wait_status(r.exit_code)),
            duration_ns: (r.start_ns > 0).then(|| ts.saturating_sub(r.start_ns)),
            host: host.clone(),
        });
    }

    fn push(&mut self, ev: ProcessEvent) {
        if self.events.len() >= MAX_PENDING {
            self.dropped += 1;
        } else {
            self.events.push(ev);
        }
    }

    /// The events made since the last take; a drop since then is logged.
    pub(crate) fn take(&mut self) -> Vec<ProcessEvent> {
        let new = self.dropped - self.dropped_logged;
        if new > 0 {
            log::warn!(
                "{new} process events dropped: too many execs and exits between two writes ({} since start)",
                self.dropped
            );
            self.dropped_logged = self.dropped;
        }
        std::mem::take(&mut self.events)
    }
}

/// The task a process table entry stands for (what an exit record does not carry).
fn task_of(p: &Process) -> Task {
    let creds = p.creds.unwrap_or_default();
    Task {
        start_ns: p.start_ns,
        cgroup_id: p.cgroup_id,
        pid: p.pid,
        tid: p.pid,
        ppid: p.ppid,
        uid: creds.uid,
        gid: creds.gid,
        netns: 0,
        comm: p.comm,
    }
}
