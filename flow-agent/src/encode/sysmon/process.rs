//! Events 1 ("Process Create", at exec) and 5 ("Process terminated", at exit), as Sysmon for
//! Linux writes them, with the `ProcessGuid` event 3 carries for the same process.
use super::{process_guid, process_values, time, Value, UNKNOWN};
use crate::event::{ProcessAction, ProcessEvent, ProcessIdentity};

/// The event id of a process event.
pub(crate) fn event_id(ev: &ProcessEvent) -> u32 {
    match ev.action {
        ProcessAction::Start => 1,
        ProcessAction::End => 5,
    }
}

/// The `EventData` of event 1, names in Sysmon's order, values not yet escaped. Windows'
/// file-version fields are `-` (Linux executables have none), as Sysmon for Linux writes them.
pub(crate) fn create_data<'a>(
    ev: &'a ProcessEvent,
    hashes: &'a str,
) -> Vec<(&'static str, Value<'a>)> {
    let p: &ProcessIdentity = &ev.process;
    let unknown = || Value::Text(UNKNOWN);
    let text = |s: Option<&'a str>| s.map_or(Value::Text(UNKNOWN), Value::Text);
    let number = |n: Option<u32>| n.map_or(Value::Text(UNKNOWN), |n| Value::Number(n.into()));
    let [guid, pid, image, user] = process_values(Some(p));
    // The login session: the ProcessGuid's host part, then zeros, as Sysmon for Linux writes it.
    let logon_guid = guid.to_string();
    let logon_guid = format!("{}-0000-0000-0000-000000000000}}", &logon_guid[..9]);
    vec![
        ("RuleName", unknown()),
        ("UtcTime", Value::Time(time::sysmon_utc_time(ev.time))),
        ("ProcessGuid", guid),
        ("ProcessId", pid),
        ("Image", image),
        ("FileVersion", unknown()),
        ("Description", unknown()),
        ("Product", unknown()),
        ("Company", unknown()),
        ("OriginalFileName", unknown()),
        ("CommandLine", text(p.command_line.as_deref())),
        ("CurrentDirectory", unknown()),
        ("User", user),
        ("LogonGuid", Value::Time(logon_guid)),
        ("LogonId", number(p.auid)),
        ("TerminalSessionId", number(p.session_id)),
        ("IntegrityLevel", Value::Text("no level")),
        ("Hashes", Value::Text(hashes)),
        (
            "ParentProcessGuid",
            Value::Guid(process_guid(p.parent_entity_id.as_deref())),
        ),
        ("ParentProcessId", number((p.ppid != 0).then_some(p.ppid))),
        ("ParentImage", text(p.parent_exe.as_deref())),
        ("ParentCommandLine", text(p.parent_command_line.as_deref())),
        ("ParentUser", unknown()),
    ]
}

/// `SHA256=<upper-case hex>` when the image's digest is known, else `-`.
pub(crate) fn hashes(p: &ProcessIdentity) -> String {
    p.image_sha256.map_or_else(
        || UNKNOWN.to_string(),
        |d| format!("SHA256={}", d.to_string().to_ascii_uppercase()),
    )
}

/// The `EventData` of event 5.
pub(crate) fn terminate_data(ev: &ProcessEvent) -> [(&'static str, Value<'_>); 6] {
    let [guid, pid, image, user] = process_values(Some(&ev.process));
    [
        ("RuleName", Value::Text(UNKNOWN)),
        ("UtcTime", Value::Time(time::sysmon_utc_time(ev.time))),
        ("ProcessGuid", guid),
        ("ProcessId", pid),
        ("Image", image),
        ("User", user),
    ]
}
