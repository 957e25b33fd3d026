//! Byte offsets of kernel struct fields, computed by userspace from the running kernel's BTF and
//! handed to the eBPF programs as a read-only global. rustc emits no CO-RE relocations, so this
//! is how the programs read `task_struct`, `sock` and friends on any kernel without compiling in
//! the layout of one.

/// Marks a field the running kernel does not have.
pub const OFFSET_ABSENT: u32 = u32::MAX;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    // task_struct
    pub task_pid: u32,
    pub task_tgid: u32,
    pub task_real_parent: u32,
    pub task_group_leader: u32,
    pub task_exit_code: u32,
    pub task_start_boottime: u32,
    pub task_mm: u32,
    pub task_files: u32,
    pub task_nsproxy: u32,
    pub task_flags: u32,
    /// `task_struct.cred` (the subjective credentials), and the `kuid_t`/`kgid_t` in it.
    pub task_cred: u32,
    pub cred_uid: u32,
    pub cred_gid: u32,
    pub cred_euid: u32,
    pub cred_egid: u32,
    /// Audit's login uid and session id (absent without CONFIG_AUDIT).
    pub task_loginuid: u32,
    pub task_sessionid: u32,
    pub nsproxy_net_ns: u32,
    // mm_struct
    pub mm_arg_start: u32,
    pub mm_arg_end: u32,
    pub mm_exe_file: u32,
    // file, path, dentry, qstr, inode
    pub file_f_path: u32,
    pub file_private_data: u32,
    pub path_dentry: u32,
    pub path_mnt: u32,
    pub dentry_d_parent: u32,
    pub dentry_d_name_name: u32,
    pub dentry_d_inode: u32,
    pub inode_i_nlink: u32,
    // vfsmount and the struct mount that embeds it
    pub vfsmount_mnt_root: u32,
    pub mount_mnt: u32,
    pub mount_mnt_parent: u32,
    pub mount_mnt_mountpoint: u32,
    // files_struct, fdtable, socket
    pub files_fdt: u32,
    pub fdtable_max_fds: u32,
    pub fdtable_fd: u32,
    pub socket_sk: u32,
    // sock, sock_common, net
    pub sock_common_skc_net: u32,
    pub skc_family: u32,
    /// Local port, host byte order.
    pub skc_num: u32,
    /// Remote port, network byte order.
    pub skc_dport: u32,
    /// `inet_sock.inet_sport`: local port, network byte order. Unlike `skc_num`, it is not
    /// cleared when the port is released, just before the close state change is traced.
    pub inet_sport: u32,
    pub skc_rcv_saddr: u32,
    pub skc_daddr: u32,
    pub skc_v6_rcv_saddr: u32,
    pub skc_v6_daddr: u32,
    pub net_ns_inum: u32,
    pub sock_sk_err: u32,
    pub sock_sk_protocol: u32,
    pub sock_sk_flags: u32,
    /// `sock_common.skc_cookie` (atomic64_t): the socket cookie, 0 until first asked for.
    pub skc_cookie: u32,
    // tcp_sock
    pub tcp_bytes_received: u32,
    pub tcp_bytes_acked: u32,
    pub tcp_bytes_sent: u32,
    pub tcp_segs_in: u32,
    pub tcp_segs_out: u32,
    pub tcp_data_segs_in: u32,
    pub tcp_data_segs_out: u32,
    pub tcp_total_retrans: u32,
    pub tcp_srtt_us: u32,
    pub tcp_snd_una: u32,
    pub tcp_write_seq: u32,
    pub tcp_rcv_nxt: u32,
    /// Bit offsets (not bytes) in `tcp_sock` of the `rx_opt` bitfields the handshake
    /// negotiated: timestamps, window scaling.
    pub tcp_tstamp_ok_bit: u32,
    pub tcp_wscale_ok_bit: u32,
}

/// Layout of the `sock:inet_sock_set_state` tracepoint record, read from its tracefs format file
/// (the record is a stable ABI, but its offsets still differ between kernels). The programs use
/// the raw tracepoint and read the socket instead; `flow-agent probe` still checks this layout.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetStateLayout {
    pub skaddr: u32,
    pub oldstate: u32,
    pub newstate: u32,
    pub sport: u32,
    pub dport: u32,
    pub family: u32,
    pub protocol: u32,
    pub saddr: u32,
    pub daddr: u32,
    pub saddr_v6: u32,
    pub daddr_v6: u32,
}

/// Everything the programs need to know about the running kernel and the agent's configuration.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProgramConfig {
    pub offsets: KernelOffsets,
    /// Wake the consumer only when this many bytes wait in the ring buffer (it also polls).
    pub wakeup_bytes: u32,
    /// Non-zero: the cgroup_skb programs count TCP packets per socket (IP bytes, flags,
    /// first payload times, Zeek history). Zero: TCP packets leave them after one header byte.
    pub tcp_detail: u32,
    /// Non-zero (with `tcp_detail`): the first payload segment of each direction of each TCP
    /// connection is copied to userspace (`PayloadRecord`).
    pub payload_inspection: u32,
}

#[cfg(feature = "user")]
unsafe impl aya::Pod for ProgramConfig {}
