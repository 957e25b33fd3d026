//! Facts about this host that every event carries (read by enrich::host).

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostInfo {
    pub hostname: String,
    /// Fully qualified name when the hostname resolves to one (from /etc/hosts), else None.
    pub fqdn: Option<String>,
    pub machine_id: String,
    pub boot_id: String,
    pub os_name: Option<String>,
    pub os_version: Option<String>,
    pub kernel: String,
    pub agent_version: &'static str,
}
