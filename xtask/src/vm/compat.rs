//! The kernel-compatibility suite: the tests whose outcome depends on the kernel, which CI runs
//! on every VM kernel (`cargo xtask vm-test`). `--full` runs every test binary instead.

use std::path::PathBuf;

use super::binary_stem;
use super::script::TestRun;

/// Test binary and the tests of it that the suite runs (`--exact` names; empty: all of them).
/// Each starts its own agent and picks out its own namespaces, ports and pids.
pub const SUITE: &[(&str, &[&str])] = &[
    // Every program loads and attaches, and the start-up self-check passes (issue #22).
    (
        "self_check",
        &[
            "probe_self_check_json_passes_every_check",
            "the_first_stats_event_carries_a_passed_self_check",
        ],
    ),
    // TCP v4/v6, connect and accept, counts exact against the capture: with the TCP detail
    // tier and without it (the default: counts from the socket through BTF offsets).
    (
        "tcp_capture",
        &[
            "tcp_v4_exchange_is_attributed_and_counted",
            "tcp_v6_exchange_is_attributed_and_counted",
            "tcp_v4_exchange_without_tcp_detail_is_counted_from_the_socket",
            "tcp_v6_exchange_without_tcp_detail_is_counted_from_the_socket",
        ],
    ),
    (
        "tcp_detail",
        &[
            "tcp_detail_v4_request_response_matches_capture",
            "tcp_detail_v6_request_response_matches_capture",
        ],
    ),
    // UDP: one unconnected socket to three peers, and request/response (connected UDP is the
    // DNS test's client).
    (
        "udp_capture",
        &[
            "udp_v4_request_response",
            "udp_one_socket_three_peers_gives_three_flows",
        ],
    ),
    // Short-lived processes, each attributed exactly.
    (
        "attribution",
        &["two_hundred_short_lived_curls_are_each_attributed"],
    ),
    // The exec path walk: memfd, deleted file, and long and deep paths.
    (
        "hardening",
        &[
            "binaries_executed_from_memfd_and_deleted_files_are_named_and_flagged",
            "an_executable_28_deep_with_the_longest_names_is_named_whole",
        ],
    ),
    // A DNS name (connected UDP and TCP queries), the first-payload copy (TLS SNI).
    (
        "dns_names",
        &["dns_events_name_the_query_its_answers_and_the_process_that_asked"],
    ),
    (
        "app_protocol",
        &["flows_name_their_protocol_and_tls_matches_tshark_and_ja4plus"],
    ),
    // The privilege drop (maps created before it: RLIMIT_MEMLOCK before 5.11).
    ("service", &["runs_as_the_user_named_in_flow_agent_user"]),
];

/// Failures known and tracked, shown as `gap` in the matrix rather than failing it: (kernels,
/// test, why). An entry that passes is shown as `pass` and should then be removed.
pub const KNOWN_GAPS: &[Gap] = &[];

/// (kernels, test, why).
pub type Gap = (&'static [&'static str], &'static str, &'static str);

/// Why `test` is known to fail on `kernel`, if it is.
pub fn known_gap(kernel: &str, test: &str) -> Option<&'static str> {
    gap_in(KNOWN_GAPS, kernel, test)
}

fn gap_in(gaps: &[Gap], kernel: &str, test: &str) -> Option<&'static str> {
    gaps.iter()
        .find(|(kernels, name, _)| kernels.contains(&kernel) && *name == test)
        .map(|(_, _, why)| *why)
}

/// The suite's runs out of the built test binaries, in [`SUITE`]'s order; an error names a
/// binary of the suite that was not built.
pub fn suite_runs(binaries: &[PathBuf]) -> anyhow::Result<Vec<TestRun>> {
    SUITE
        .iter()
        .map(|(stem, tests)| {
            let path = binaries
                .iter()
                .find(|b| binary_stem(b) == *stem)
                .ok_or_else(|| {
                    anyhow::anyhow!("the compat suite's test binary {stem} was not built")
                })?;
            Ok(TestRun {
                path: path.clone(),
                filters: tests.iter().map(|t| t.to_string()).collect(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suite_names_binaries_in_order_with_exact_filters() {
        let built: Vec<PathBuf> = SUITE
            .iter()
            .rev()
            .map(|(stem, _)| PathBuf::from(format!("/t/deps/{stem}-0123abcd")))
            .collect();
        let runs = suite_runs(&built).unwrap();
        assert_eq!(runs.len(), SUITE.len());
        assert_eq!(binary_stem(&runs[0].path), "self_check");
        assert_eq!(runs[0].filters.len(), 2);
        // `built` is in reverse: its first is the suite's last.
        let missing = suite_runs(&built[1..]).unwrap_err().to_string();
        let last = SUITE.last().unwrap().0;
        assert!(missing.contains(last), "{missing}");
    }

    #[test]
    fn gaps_are_per_kernel() {
        let v6 = "tcp_detail::tcp_detail_v6_request_response_matches_capture";
        let gaps: &[Gap] = &[(&["5.10", "6.1"], v6, "why")];
        assert_eq!(gap_in(gaps, "5.10", v6), Some("why"));
        assert!(gap_in(gaps, "6.12", v6).is_none());
        assert!(gap_in(gaps, "host", v6).is_none());
        assert!(gap_in(gaps, "5.10", "tcp_detail::other").is_none());
        // Issue #17 item 4 (the accepted IPv6 SYN-ACK on 5.10 and 6.1) is closed.
        assert!(known_gap("5.10", v6).is_none());
    }
}
