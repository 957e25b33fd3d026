//! inet_diag dump datagrams (netlink), for both address families.
#![no_main]
use flow_agent::capture::sock_diag::parse_dump_datagram;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_dump_datagram(data, libc_af::INET, 1);
    let _ = parse_dump_datagram(data, libc_af::INET6, 1);
});

mod libc_af {
    pub const INET: u8 = 2;
    pub const INET6: u8 = 10;
}
