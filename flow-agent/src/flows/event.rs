//! The native event: MITRE CAR flow names where CAR has one, Zeek conn.log names for what Zeek
//! has and CAR lacks, documented field by field in docs/events.md. Unknown fields are omitted.
use serde::Serialize;

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct FlowEvent {
    /// When this event was produced (RFC 3339 UTC, microseconds).
    pub timestamp: String,
    /// start, update or end.
    pub event_action: &'static str,
    /// Unique on this host for the agent's lifetime: boot id prefix plus a counter.
    pub flow_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub community_id: Option<String>,
    pub transport_protocol: &'static str,
    pub src_ip: String,
    pub src_port: u16,
    pub dest_ip: String,
    pub dest_port: u16,
    /// outbound or inbound, relative to this host.
    pub network_direction: &'static str,
    /// internal when the remote endpoint is in the configured local networks, else external.
    pub network_locality: &'static str,
    /// Whether this host initiated the flow (Zeek local_orig) and answered it (local_resp).
    pub local_orig: bool,
    pub local_resp: bool,
    /// False when the flow was already open when the agent started watching.
    pub start_observed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_time: Option<String>,
    /// Seconds from start to end (or to this update).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conn_state: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<String>,
    /// TCP: OR of the flags of every packet, both directions ("FSRPAUEC" letters).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_flags: Option<String>,
    /// TCP: OR of the flags of the originator's packets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orig_tcp_flags: Option<String>,
    /// TCP: OR of the flags of the responder's packets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resp_tcp_flags: Option<String>,

    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orig_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resp_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orig_pkts: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resp_pkts: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orig_ip_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resp_ip_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packet_count: Option<u64>,
    /// Counters since the previous event of this flow (update and end events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<IntervalCounters>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt_us: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retransmits: Option<u32>,
    /// TCP: when the first packet with payload from the originator passed this host's stack.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orig_first_byte_time: Option<String>,
    /// TCP: when the first packet with payload from the responder passed this host's stack.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resp_first_byte_time: Option<String>,
    /// TCP: seconds from the originator's first payload byte to the responder's first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_to_first_byte: Option<f64>,

    /// Which process the event names: connector, acceptor or listener.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attribution: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ppid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_deleted: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command_line: Option<String>,
    /// The arguments one by one (argv), exact where `command_line` needs quoting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process_args: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command_line_truncated: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process_start_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process_entity_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_exe: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_entity_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup_id: Option<u64>,
    /// Path of the process's cgroup (v2), relative to the hierarchy's root.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    /// docker, containerd, cri-o or podman.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_runtime: Option<String>,
    /// The systemd service or scope the process runs in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub systemd_unit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netns: Option<u32>,
    pub hostname: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fqdn: Option<String>,
    /// /etc/machine-id: the host across reboots and renames.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_version: Option<String>,
    pub agent_version: &'static str,
    /// CAR: host names of the two ends; this host's own, the remote's from DNS answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src_hostname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src_fqdn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dest_hostname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dest_fqdn: Option<String>,
    /// The remote's name as asked, then each CNAME target, when the answer had a chain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_chain: Option<Vec<String>>,

    /// Application protocol (http, http2, tls, ssh, dns, smtp, ...), from the first payload
    /// bytes when they could be recognised, else from the server's well-known port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub application_protocol: Option<&'static str>,
    /// How `application_protocol` was decided: payload or port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_protocol_source: Option<&'static str>,
    /// A short decoded summary: HTTP method, host, path and status; TLS version, SNI and ALPN;
    /// the SSH banner; the DNS query (at most 256 characters).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proto_info: Option<String>,
    /// TLS: the negotiated version ("TLS 1.3"), or the highest the client offered when the
    /// ServerHello was not seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_version: Option<String>,
    /// TLS: the negotiated cipher suite's IANA name (its number in hex when not known).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cipher: Option<String>,
    /// TLS: the negotiated cipher suite's number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cipher_suite: Option<u16>,
    /// TLS: the server name (SNI) the client asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_server_name: Option<String>,
    /// TLS: the protocol the server chose by ALPN.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_alpn: Option<String>,
    /// TLS: the protocols the client offered by ALPN.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_alpn_offered: Option<Vec<String>>,
    /// TLS fingerprints of the ClientHello (JA3, JA4) and the ServerHello (JA3S, JA4S).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ja3: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ja3s: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ja4: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ja4s: Option<String>,
    /// The originator's and the responder's first payload bytes as printable ASCII (others as
    /// '.'): only when `[enrich] content_bytes` is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orig_content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resp_content: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct IntervalCounters {
    pub in_bytes: u64,
    pub out_bytes: u64,
    pub in_pkts: u64,
    pub out_pkts: u64,
}
