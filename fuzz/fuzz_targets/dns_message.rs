//! DNS messages as the kernel copies them from port 53: parsed over UDP and TCP framing, and
//! fed to the name cache.
#![no_main]
use flow_agent::{enrich::dns_names::DnsNames, proto::dns};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = dns::parse(data);
    let _ = dns::parse_tcp(data);
    let mut names = DnsNames::with_capacity(4);
    names.observe(data, 1);
    names.expire(2);
});
