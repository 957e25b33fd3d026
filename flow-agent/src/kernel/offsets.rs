//! Fills `flow_common::KernelOffsets` from the running kernel's BTF.

use flow_common::offsets::OFFSET_ABSENT;
use flow_common::KernelOffsets;

use super::btf::{Btf, BtfError};

#[derive(Debug, thiserror::Error)]
pub(crate) enum OffsetsError {
    #[error("kernel lacks struct {struct_name} member {member}, which flow-agent needs: {source}")]
    Missing {
        struct_name: String,
        member: String,
        #[source]
        source: BtfError,
    },
}

/// Computes every offset the eBPF programs use. Members that only some kernels have are
/// `OFFSET_ABSENT` when missing; a missing required member is an error naming it.
pub(crate) fn resolve(btf: &Btf) -> Result<KernelOffsets, OffsetsError> {
    let req = |s: &str, path: &str| required(btf, s, &[path]);
    Ok(KernelOffsets {
        task_pid: req("task_struct", "pid")?,
        task_tgid: req("task_struct", "tgid")?,
        task_real_parent: req("task_struct", "real_parent")?,
        task_group_leader: req("task_struct", "group_leader")?,
        task_exit_code: req("task_struct", "exit_code")?,
        // Renamed in 5.5.
        task_start_boottime: required(btf, "task_struct", &["start_boottime", "real_start_time"])?,
        task_mm: req("task_struct", "mm")?,
        task_files: req("task_struct", "files")?,
        task_nsproxy: req("task_struct", "nsproxy")?,
        task_flags: req("task_struct", "flags")?,
        task_cred: req("task_struct", "cred")?,
        // kuid_t and kgid_t wrap one integer at their offset.
        cred_uid: req("cred", "uid")?,
        cred_gid: req("cred", "gid")?,
        cred_euid: req("cred", "euid")?,
        cred_egid: req("cred", "egid")?,
        // Only with CONFIG_AUDIT.
        task_loginuid: optional(btf, "task_struct", "loginuid")?,
        task_sessionid: optional(btf, "task_struct", "sessionid")?,
        nsproxy_net_ns: req("nsproxy", "net_ns")?,
        mm_arg_start: req("mm_struct", "arg_start")?,
        mm_arg_end: req("mm_struct", "arg_end")?,
        mm_exe_file: req("mm_struct", "exe_file")?,
        file_f_path: req("file", "f_path")?,
        file_private_data: req("file", "private_data")?,
        path_dentry: req("path", "dentry")?,
        path_mnt: req("path", "mnt")?,
        dentry_d_parent: req("dentry", "d_parent")?,
        dentry_d_name_name: req("dentry", "d_name.name")?,
        dentry_d_inode: req("dentry", "d_inode")?,
        // `i_nlink` is const; both share an anonymous union.
        inode_i_nlink: required(btf, "inode", &["__i_nlink", "i_nlink"])?,
        vfsmount_mnt_root: req("vfsmount", "mnt_root")?,
        mount_mnt: req("mount", "mnt")?,
        mount_mnt_parent: req("mount", "mnt_parent")?,
        mount_mnt_mountpoint: req("mount", "mnt_mountpoint")?,
        files_fdt: req("files_struct", "fdt")?,
        fdtable_max_fds: req("fdtable", "max_fds")?,
        fdtable_fd: req("fdtable", "fd")?,
        socket_sk: req("socket", "sk")?,
        // possible_net_t wraps the `struct net *`; the programs want the pointer itself.
        sock_common_skc_net: req("sock_common", "skc_net.net")?,
        skc_family: req("sock_common", "skc_family")?,
        skc_num: req("sock_common", "skc_num")?,
        skc_dport: req("sock_common", "skc_dport")?,
        inet_sport: req("inet_sock", "inet_sport")?,
        skc_rcv_saddr: req("sock_common", "skc_rcv_saddr")?,
        skc_daddr: req("sock_common", "skc_daddr")?,
        skc_v6_rcv_saddr: req("sock_common", "skc_v6_rcv_saddr")?,
        skc_v6_daddr: req("sock_common", "skc_v6_daddr")?,
        net_ns_inum: req("net", "ns.inum")?,
        sock_sk_err: req("sock", "sk_err")?,
        // A bitfield before 5.6 (older than any kernel the agent supports).
        sock_sk_protocol: req("sock", "sk_protocol")?,
        // `sk_flags` is a macro for this sock_common member.
        sock_sk_flags: req("sock", "__sk_common.skc_flags")?,
        // atomic64_t: its `counter` is at the member's offset.
        skc_cookie: req("sock_common", "skc_cookie")?,
        tcp_bytes_received: req("tcp_sock", "bytes_received")?,
        tcp_bytes_acked: req("tcp_sock", "bytes_acked")?,
        // Added in 5.5.
        tcp_bytes_sent: optional(btf, "tcp_sock", "bytes_sent")?,
        tcp_segs_in: req("tcp_sock", "segs_in")?,
        tcp_segs_out: req("tcp_sock", "segs_out")?,
        tcp_data_segs_in: req("tcp_sock", "data_segs_in")?,
        tcp_data_segs_out: req("tcp_sock", "data_segs_out")?,
        tcp_total_retrans: req("tcp_sock", "total_retrans")?,
        tcp_srtt_us: req("tcp_sock", "srtt_us")?,
        tcp_snd_una: req("tcp_sock", "snd_una")?,
        tcp_write_seq: req("tcp_sock", "write_seq")?,
        tcp_rcv_nxt: req("tcp_sock", "rcv_nxt")?,
        tcp_tstamp_ok_bit: optional_bit(btf, "tcp_sock", "rx_opt.tstamp_ok")?,
        tcp_wscale_ok_bit: optional_bit(btf, "tcp_sock", "rx_opt.wscale_ok")?,
    })
}

/// The offset of the first of `paths` the kernel has; the error names the first (current) name.
fn required(btf: &Btf, struct_name: &str, paths: &[&str]) -> Result<u32, OffsetsError> {
    let mut first_error = None;
    for path in paths {
        match btf.member_offset(struct_name, path) {
            Ok(offset) => return Ok(offset),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(OffsetsError::Missing {
        struct_name: struct_name.to_owned(),
        member: paths.join(" or "),
        source: first_error.unwrap_or_else(|| BtfError::MemberNotFound {
            struct_name: struct_name.to_owned(),
            path: String::new(),
        }),
    })
}

/// Like `required`, but a member the kernel lacks (or has only as a bitfield) is
/// `OFFSET_ABSENT`. A malformed BTF file is still an error.
fn optional(btf: &Btf, struct_name: &str, path: &str) -> Result<u32, OffsetsError> {
    match btf.member_offset(struct_name, path) {
        Ok(offset) => Ok(offset),
        Err(BtfError::MemberNotFound { .. } | BtfError::Bitfield { .. }) => Ok(OFFSET_ABSENT),
        Err(source) => Err(OffsetsError::Missing {
            struct_name: struct_name.to_owned(),
            member: path.to_owned(),
            source,
        }),
    }
}

/// Like `optional`, for the bit offset of a member that may be a bitfield.
fn optional_bit(btf: &Btf, struct_name: &str, path: &str) -> Result<u32, OffsetsError> {
    match btf.member_bit_offset(struct_name, path) {
        Ok(offset) => Ok(offset),
        Err(BtfError::MemberNotFound { .. }) => Ok(OFFSET_ABSENT),
        Err(source) => Err(OffsetsError::Missing {
            struct_name: struct_name.to_owned(),
            member: path.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn resolves_the_running_kernel() {
        if !Path::new(super::super::btf::VMLINUX_BTF).exists() {
            eprintln!("skipped: no kernel BTF");
            return;
        }
        let btf = Btf::from_sys_fs().unwrap();
        let o = resolve(&btf).unwrap();
        println!("{o:#?}");

        // Nothing is absent on a 6.x kernel.
        assert_ne!(o.tcp_bytes_sent, OFFSET_ABSENT);
        assert_ne!(o.sock_sk_protocol, OFFSET_ABSENT);

        // Members that are never first in their struct.
        for (name, offset) in [
            ("task_pid", o.task_pid),
            ("task_tgid", o.task_tgid),
            ("task_real_parent", o.task_real_parent),
            ("task_files", o.task_files),
            ("task_nsproxy", o.task_nsproxy),
            ("nsproxy_net_ns", o.nsproxy_net_ns),
            ("mm_arg_start", o.mm_arg_start),
            ("file_f_path", o.file_f_path),
            ("dentry_d_name_name", o.dentry_d_name_name),
            ("mount_mnt", o.mount_mnt),
            ("fdtable_fd", o.fdtable_fd),
            ("socket_sk", o.socket_sk),
            ("sock_common_skc_net", o.sock_common_skc_net),
            ("net_ns_inum", o.net_ns_inum),
            ("skc_cookie", o.skc_cookie),
        ] {
            assert!(offset > 0 && offset < 16384, "{name} = {offset}");
        }
        // Facts that hold for every layout.
        assert_eq!(o.task_tgid, o.task_pid + 4, "pid_t pid; pid_t tgid;");
        assert_eq!(o.mm_arg_end, o.mm_arg_start + 8);
        assert_eq!(o.path_mnt, 0);
        assert_eq!(o.path_dentry, 8);
        assert_eq!(o.fdtable_max_fds, 0);
        assert!(o.dentry_d_name_name > btf.member_offset("dentry", "d_name").unwrap());
        assert!(
            o.mount_mnt_parent < o.mount_mnt,
            "mnt_parent precedes the embedded vfsmount"
        );

        // tcp_sock embeds inet_connection_sock, which embeds inet_sock, which embeds sock.
        let sock_size = btf.struct_size("sock").unwrap();
        for offset in [
            o.tcp_bytes_received,
            o.tcp_bytes_acked,
            o.tcp_bytes_sent,
            o.tcp_segs_in,
            o.tcp_segs_out,
            o.tcp_data_segs_in,
            o.tcp_data_segs_out,
            o.tcp_total_retrans,
            o.tcp_srtt_us,
            o.tcp_snd_una,
            o.tcp_write_seq,
        ] {
            assert!(offset >= sock_size && offset < btf.struct_size("tcp_sock").unwrap());
        }
        for offset in [o.sock_sk_err, o.sock_sk_protocol, o.sock_sk_flags] {
            assert!(offset > 0 && offset < sock_size);
        }
        // tcp_options_received packs them into one u16: saw_tstamp, tstamp_ok, dsack, wscale_ok.
        let rx_opt = btf.member_offset("tcp_sock", "rx_opt").unwrap() * 8;
        assert!(o.tcp_tstamp_ok_bit > rx_opt);
        assert_eq!(o.tcp_wscale_ok_bit, o.tcp_tstamp_ok_bit + 2);
        assert!(o.tcp_rcv_nxt >= sock_size);
        // inet_sock embeds sock.
        assert!(o.inet_sport >= sock_size && o.inet_sport < btf.struct_size("inet_sock").unwrap());
    }
}
