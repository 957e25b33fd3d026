//! Known answers from a real handshake: `openssl s_client -servername example.test -alpn
//! h2,http/1.1` against `openssl s_server -alpn h2` (OpenSSL 3.0), captured on loopback. JA3
//! and JA3S as tshark 4.0 computes them, JA4 and JA4S as the ja4plus package (1.4.0) does.
use super::*;

const CLIENT_HELLO: &[&str] = &[
    "160301014b010001470303474396099c5127858d5599495fb38f36bdd1ac1ee3dea15fb4c546cab23db5b920",
    "8731e40e708ef7fe0d7be8d14113bb06b36d244d653f556490fb30d7c8df8128003e130213031301c02cc030",
    "009fcca9cca8ccaac02bc02f009ec024c028006bc023c0270067c00ac0140039c009c0130033009d009c003d",
    "003c0035002f00ff010000c000000011000f00000c6578616d706c652e74657374000b000403000102000a00",
    "160014001d0017001e0019001801000101010201030104002300000010000e000c02683208687474702f312e",
    "310016000000170000000d002a0028040305030603080708080809080a080b08040805080604010501060103",
    "0303010302040205020602002b0009080304030303020301002d00020101003300260024001d0020cd8b06a1",
    "31d3f728864d4002d11a74a1fc4ccc9e2ddd14dd4ffc9129fc9aa341",
];

/// The ServerHello record (the first of the server's flight).
const SERVER_HELLO: &[&str] = &[
    "160303007a0200007603030dcb359f53deb0b3733c14cbb1804ac47abfb97efe842b5c863c8ef9a0559a4720",
    "8731e40e708ef7fe0d7be8d14113bb06b36d244d653f556490fb30d7c8df8128130200002e002b0002030400",
    "330024001d00208fc835e0717129951b9e7773f8c94e3bec594774f7d37aa71dd9df1c0d9fc92e",
];

fn bytes(parts: &[&str]) -> Vec<u8> {
    let hex: String = parts.concat();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn client_hello_fields_and_fingerprints_match_tshark_and_ja4plus() {
    let h = parse_client_hello(&bytes(CLIENT_HELLO)).unwrap();
    assert_eq!(h.server_name.as_deref(), Some("example.test"));
    assert_eq!(h.alpn, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
    assert_eq!(h.max_version(), 0x0304);
    assert_eq!(
        h.ja3_string(),
        "771,4866-4867-4865-49196-49200-159-52393-52392-52394-49195-49199-158-49188-49192-107-\
         49187-49191-103-49162-49172-57-49161-49171-51-157-156-61-60-53-47-255,\
         0-11-10-35-16-22-23-13-43-45-51,29-23-30-25-24-256-257-258-259-260,0-1-2"
    );
    assert_eq!(h.ja3(), "5a1edc7f170af1014fc65c994878e63c");
    assert_eq!(h.ja4(), "t13d3111h2_e8f1e7e78f70_1f22a2ca17c4");
}

#[test]
fn server_hello_fields_and_fingerprints_match_tshark_and_ja4plus() {
    let h = parse_server_hello(&bytes(SERVER_HELLO)).unwrap();
    assert_eq!(h.version, 0x0304);
    assert_eq!(h.cipher_suite, 0x1302);
    assert_eq!(h.ja3s_string(), "771,4866,43-51");
    assert_eq!(h.ja3s(), "15af977ce25de452b96affa2addb1036");
    assert_eq!(h.ja4s(), "t130200_1302_a56c5b993250");
}

#[test]
fn every_truncation_is_an_error_or_a_shorter_hello_never_a_panic() {
    let full = bytes(CLIENT_HELLO);
    for n in 0..full.len() {
        let _ = parse_client_hello(&full[..n]);
        let _ = parse_server_hello(&full[..n]);
    }
    assert!(parse_client_hello(&full[..5]).is_err());
}

#[test]
fn grease_values_are_recognised() {
    for v in [0x0a0a, 0x1a1a, 0xfafa] {
        assert!(is_grease(v));
    }
    for v in [0x0a1a, 0x1301, 0x0000] {
        assert!(!is_grease(v));
    }
}

#[test]
fn hostile_server_names_are_escaped() {
    assert_eq!(printable(b"a\nb\"<"), "a\\x0ab\"<");
}
