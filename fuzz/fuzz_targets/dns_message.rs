//! DNS messages as the kernel copies them from port 53: parsed over UDP and TCP framing, and
//! fed to the name cache as a query and as its answer.
#![no_main]
use flow_agent::{
    enrich::dns_names::{Asker, DnsNames},
    proto::dns,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = dns::parse(data);
    let _ = dns::parse_tcp(data);
    let mut names = DnsNames::with_capacity(4);
    let asker = Asker::udp(1, ([127, 0, 0, 1].into(), 53));
    // The same message as a query first (QR bit clear), so that the answer path runs too.
    let mut query = data.to_vec();
    if let Some(flags) = query.get_mut(2) {
        *flags &= 0x7f;
    }
    names.sent(asker, &query, 1);
    let _ = names.received(asker, 7, data, 1);
    names.expire(2);
});
