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
    assert_eq!(h.max_version(), Some(0x0304));
    assert!(!h.truncated);
    assert_eq!(
        h.ja3_string(),
        "771,4866-4867-4865-49196-49200-159-52393-52392-52394-49195-49199-158-49188-49192-107-\
         49187-49191-103-49162-49172-57-49161-49171-51-157-156-61-60-53-47-255,\
         0-11-10-35-16-22-23-13-43-45-51,29-23-30-25-24-256-257-258-259-260,0-1-2"
    );
    assert_eq!(h.ja3().as_deref(), Some("5a1edc7f170af1014fc65c994878e63c"));
    assert_eq!(
        h.ja4().as_deref(),
        Some("t13d3111h2_e8f1e7e78f70_1f22a2ca17c4")
    );
}

#[test]
fn server_hello_fields_and_fingerprints_match_tshark_and_ja4plus() {
    let h = parse_server_hello(&bytes(SERVER_HELLO)).unwrap();
    assert_eq!(h.version, Some(0x0304));
    assert!(!h.truncated);
    assert_eq!(h.cipher_suite, 0x1302);
    assert_eq!(h.ja3s_string(), "771,4866,43-51");
    assert_eq!(
        h.ja3s().as_deref(),
        Some("15af977ce25de452b96affa2addb1036")
    );
    assert_eq!(h.ja4s().as_deref(), Some("t130200_1302_a56c5b993250"));
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
    assert_eq!(printable(b"a\\b c"), "a\\x5cb\\x20c");
}

/// Builders of hellos byte by byte (RFC 8446 4.1.2, 4.1.3, 4.2).
mod build {
    pub(crate) fn u16be(v: usize) -> [u8; 2] {
        (v as u16).to_be_bytes()
    }

    /// An extension: type, length, data.
    pub(crate) fn ext(ty: u16, data: &[u8]) -> Vec<u8> {
        let mut e = ty.to_be_bytes().to_vec();
        e.extend_from_slice(&u16be(data.len()));
        e.extend_from_slice(data);
        e
    }

    /// A vector with a 16-bit length.
    pub(crate) fn vec16(items: &[u8]) -> Vec<u8> {
        let mut v = u16be(items.len()).to_vec();
        v.extend_from_slice(items);
        v
    }

    pub(crate) fn u16_list(values: &[u16]) -> Vec<u8> {
        vec16(
            &values
                .iter()
                .flat_map(|v| v.to_be_bytes())
                .collect::<Vec<_>>(),
        )
    }

    /// A handshake message (type, 24-bit length, body).
    pub(crate) fn handshake(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![kind];
        m.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        m.extend_from_slice(body);
        m
    }

    /// Handshake records carrying `message`, at most `max` bytes of it each.
    pub(crate) fn records(message: &[u8], max: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for fragment in message.chunks(max) {
            out.extend_from_slice(&[22, 3, 1]);
            out.extend_from_slice(&u16be(fragment.len()));
            out.extend_from_slice(fragment);
        }
        out
    }

    /// A ClientHello body: TLS 1.2 legacy version, a 32-byte session id, the given suites,
    /// null compression, the given extensions.
    pub(crate) fn client_hello_body(suites: &[u16], exts: &[Vec<u8>]) -> Vec<u8> {
        let mut b = vec![3, 3];
        b.extend_from_slice(&[0x11; 32]); // random
        b.push(32);
        b.extend_from_slice(&[0x22; 32]); // session id
        b.extend_from_slice(&u16_list(suites));
        b.extend_from_slice(&[1, 0]);
        b.extend_from_slice(&vec16(&exts.concat()));
        b
    }
}

const PQ_SUITES: &[u16] = &[0x1a1a, 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f];
const PQ_SNI: &[u8] = b"pq.example.test";

/// A Chrome-like TLS 1.3 ClientHello of exactly `total` bytes on the wire (one record): SNI
/// and ALPN early, then a 300-byte ECH, a post-quantum key share (X25519MLKEM768, 1216
/// bytes, then X25519), supported_versions, and padding up to `total`.
pub(crate) fn pq_client_hello(total: usize) -> Vec<u8> {
    use build::*;
    let mut sni = vec![0];
    sni.extend_from_slice(&vec16(PQ_SNI));
    let mut key_share = vec![];
    key_share.extend_from_slice(&0x11ecu16.to_be_bytes());
    key_share.extend_from_slice(&vec16(&[0x5a; 1216]));
    key_share.extend_from_slice(&0x001du16.to_be_bytes());
    key_share.extend_from_slice(&vec16(&[0x6b; 32]));
    let mut exts = vec![
        ext(0x0a0a, &[]),
        ext(0x0000, &vec16(&sni)),
        ext(0x0017, &[]),
        ext(0xff01, &[0]),
        ext(0x000a, &u16_list(&[0x2a2a, 0x11ec, 0x001d, 0x0017])),
        ext(0x000b, &[1, 0]),
        ext(0x0023, &[]),
        ext(0x0010, &vec16(b"\x02h2\x08http/1.1")),
        ext(0x0005, &[1, 0, 0, 0, 0]),
        ext(0x000d, &u16_list(&[0x0403, 0x0804, 0x0401])),
        ext(0x0012, &[]),
        ext(0x002d, &[1, 1]),
        ext(0xfe0d, &[0x7c; 300]),
        ext(0x0033, &vec16(&key_share)),
        ext(0x002b, &[4, 0x3a, 0x3a, 3, 4]),
        ext(0x001b, &[2, 0, 2]),
    ];
    let without_padding = 5 + 4 + client_hello_body(PQ_SUITES, &exts).len() + 4;
    exts.push(ext(0x0015, &vec![0; total - without_padding]));
    let hello = records(&handshake(1, &client_hello_body(PQ_SUITES, &exts)), 16384);
    assert_eq!(hello.len(), total);
    hello
}

/// Where extensions of [`pq_client_hello`] end, counted from its first byte: record header 5,
/// handshake header 4, version 2, random 32, session id 1 + 32, suites 2 + 12, compression 2,
/// extension block length 2 (94), GREASE 4 (98), then SNI 4 + 20.
const PQ_SNI_END: usize = 122;
/// Then extended_master_secret 4, renegotiation_info 5, supported_groups 14, ec_point_formats
/// 6, session_ticket 4 (155), ALPN 4 + 14.
const PQ_ALPN_END: usize = 173;
/// Then status_request 9, signature_algorithms 12, SCT 4, psk_key_exchange_modes 6, ECH 304
/// (508), key_share 4 + 2 + (4 + 1216) + (4 + 32).
const PQ_KEY_SHARE_END: usize = 1770;
/// Then supported_versions 9, compress_certificate 7, and padding from 1786 on.
const PQ_SUPPORTED_VERSIONS_END: usize = 1779;
/// The extensions of [`pq_client_hello`] in order; a cut at 2048 (in the padding) keeps all
/// but the last.
const PQ_EXTENSIONS: &[u16] = &[
    0x0a0a, 0x0000, 0x0017, 0xff01, 0x000a, 0x000b, 0x0023, 0x0010, 0x0005, 0x000d, 0x0012, 0x002d,
    0xfe0d, 0x0033, 0x002b, 0x001b, 0x0015,
];

#[test]
fn a_whole_3000_byte_hello_gives_every_field_and_the_fingerprints() {
    let h = parse_client_hello(&pq_client_hello(3000)).unwrap();
    assert!(!h.truncated);
    assert_eq!(h.server_name.as_deref(), Some("pq.example.test"));
    assert_eq!(h.max_version(), Some(0x0304));
    assert_eq!(
        h.ja3_string(),
        "771,4865-4866-4867-49195-49199,\
         0-23-65281-10-11-35-16-5-13-18-45-65037-51-43-27-21,4588-29-23,0"
    );
    assert_eq!(h.ja3().as_deref(), Some("ea9d28cefcf1f670bd11269135deca44"));
    assert_eq!(
        h.ja4().as_deref(),
        Some("t13d0516h2_e133e205ac38_08899408487c")
    );
}

#[test]
fn a_hello_cut_at_2048_bytes_keeps_sni_and_alpn_and_has_no_fingerprint() {
    let whole = pq_client_hello(3000);
    let h = parse_client_hello(&whole[..2048]).unwrap();
    assert!(h.truncated);
    assert_eq!(h.server_name.as_deref(), Some("pq.example.test"));
    assert_eq!(h.alpn, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
    assert_eq!(h.cipher_suites, PQ_SUITES);
    // Every extension but the padding the cut fell in.
    assert_eq!(h.extensions, &PQ_EXTENSIONS[..PQ_EXTENSIONS.len() - 1]);
    assert_eq!(h.supported_versions, vec![0x3a3a, 0x0304]);
    assert_eq!(h.max_version(), Some(0x0304));
    assert_eq!((h.ja3(), h.ja4()), (None, None));
}

#[test]
fn a_hello_cut_in_its_key_share_keeps_what_came_before() {
    // The first segment of a 1500-byte-MTU path (MSS 1448) ends inside the key share.
    let whole = pq_client_hello(3000);
    let cut = 1448;
    assert!(PQ_KEY_SHARE_END - 1262 < cut && cut < PQ_KEY_SHARE_END);
    let h = parse_client_hello(&whole[..cut]).unwrap();
    assert!(h.truncated);
    assert_eq!(h.server_name.as_deref(), Some("pq.example.test"));
    assert_eq!(h.alpn, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
    assert_eq!(h.extensions, &PQ_EXTENSIONS[..13]);
    assert_eq!(h.signature_algorithms, vec![0x0403, 0x0804, 0x0401]);
    // supported_versions comes after the cut: the legacy "TLS 1.2" would be a guess.
    assert!(h.supported_versions.is_empty());
    assert_eq!(h.max_version(), None);
    assert_eq!((h.ja3(), h.ja4()), (None, None));
}

#[test]
fn every_cut_keeps_exactly_the_complete_extensions() {
    let whole = pq_client_hello(3000);
    for n in 9..=whole.len() {
        let h = parse_client_hello(&whole[..n]).unwrap_or_else(|e| panic!("cut at {n}: {e}"));
        assert_eq!(h.truncated, n < whole.len(), "cut at {n}");
        assert_eq!(h.ja3().is_none(), h.truncated, "cut at {n}");
        assert_eq!(h.ja4().is_none(), h.truncated, "cut at {n}");
        assert_eq!(h.server_name.is_some(), n >= PQ_SNI_END, "cut at {n}");
        assert_eq!(
            h.alpn.len(),
            if n >= PQ_ALPN_END { 2 } else { 0 },
            "cut at {n}"
        );
        assert_eq!(
            h.extensions.contains(&0x0033),
            n >= PQ_KEY_SHARE_END,
            "cut at {n}"
        );
        assert_eq!(
            h.max_version(),
            (n >= PQ_SUPPORTED_VERSIONS_END).then_some(0x0304),
            "cut at {n}"
        );
    }
    // Fewer bytes than the handshake header: no hello at all.
    assert_eq!(parse_client_hello(&whole[..8]), Err(TlsError::Truncated));
}

#[test]
fn a_hello_over_several_records_is_joined() {
    use build::*;
    let single = pq_client_hello(3000);
    let message = &single[5..];
    let split = records(message, 1000);
    assert_eq!(split.len(), 5 * 3 + message.len());
    let joined = parse_client_hello(&split).unwrap();
    assert_eq!(joined, parse_client_hello(&single).unwrap());
    assert_eq!(
        joined.ja3().as_deref(),
        Some("ea9d28cefcf1f670bd11269135deca44")
    );
    // Cut at 2048: the second record's header is not read as hello bytes.
    let h = parse_client_hello(&split[..2048]).unwrap();
    assert!(h.truncated);
    assert_eq!(h.server_name.as_deref(), Some("pq.example.test"));
    assert_eq!(h.extensions, &PQ_EXTENSIONS[..PQ_EXTENSIONS.len() - 1]);
    // Only the first record captured: a cut hello, not a malformed one.
    let h = parse_client_hello(&split[..1005]).unwrap();
    assert!(h.truncated);
    assert_eq!(h.extensions, &PQ_EXTENSIONS[..13]);
}

#[test]
fn a_malformed_extension_is_an_error_even_in_a_cut_hello() {
    use build::*;
    // An SNI extension whose name list claims 40 bytes of its 5.
    let bad_sni = ext(0x0000, &[0, 40, 0, 0, 1]);
    let body = client_hello_body(&[0x1301], &[bad_sni, ext(0x0015, &[0; 100])]);
    let hello = records(&handshake(1, &body), 16384);
    assert_eq!(parse_client_hello(&hello), Err(TlsError::Malformed));
    assert_eq!(parse_client_hello(&hello[..150]), Err(TlsError::Malformed));
    // An odd-length cipher suite list.
    let mut body = client_hello_body(&[0x1301], &[]);
    body[67..69].copy_from_slice(&[0, 3]);
    body.insert(71, 0);
    assert_eq!(
        parse_client_hello(&records(&handshake(1, &body), 16384)),
        Err(TlsError::Malformed)
    );
}

/// A TLS 1.3 ServerHello choosing TLS_AES_128_GCM_SHA256 with a post-quantum key share
/// (X25519MLKEM768: 1120 bytes) before supported_versions.
fn pq_server_hello() -> Vec<u8> {
    use build::*;
    let mut b = vec![3, 3];
    b.extend_from_slice(&[0x33; 32]);
    b.push(32);
    b.extend_from_slice(&[0x22; 32]);
    b.extend_from_slice(&[0x13, 0x01, 0]);
    let mut key_share = 0x11ecu16.to_be_bytes().to_vec();
    key_share.extend_from_slice(&vec16(&[0x4d; 1120]));
    let exts = [ext(0x0033, &key_share), ext(0x002b, &[3, 4])].concat();
    b.extend_from_slice(&vec16(&exts));
    records(&handshake(2, &b), 16384)
}

#[test]
fn a_cut_server_hello_keeps_its_cipher_and_has_no_fingerprint() {
    let whole = pq_server_hello();
    let h = parse_server_hello(&whole).unwrap();
    assert!(!h.truncated);
    assert_eq!((h.cipher_suite, h.version), (0x1301, Some(0x0304)));
    assert_eq!(h.extensions, vec![0x0033, 0x002b]);
    assert_eq!(h.ja3s_string(), "771,4865,51-43");
    assert!(h.ja3s().is_some() && h.ja4s().is_some());
    // Cut in the key share: the cipher is known, the version is not.
    let h = parse_server_hello(&whole[..1000]).unwrap();
    assert!(h.truncated);
    assert_eq!((h.cipher_suite, h.version), (0x1301, None));
    assert_eq!((h.ja3s(), h.ja4s()), (None, None));
    // Cut in the cipher suite (bytes 76 and 77): nothing sure.
    assert_eq!(parse_server_hello(&whole[..77]), Err(TlsError::Truncated));
    assert!(parse_server_hello(&whole[..79]).unwrap().truncated);
}

#[test]
fn detection_of_a_cut_hello_says_so() {
    let whole = pq_client_hello(3000);
    let d = crate::proto::detect(false, &whole[..2048], &pq_server_hello(), 443).unwrap();
    assert_eq!(d.info.as_deref(), Some("TLS 1.3 sni pq.example.test"));
    let t = d.tls.unwrap();
    assert_eq!(t.client_hello_truncated, Some(true));
    assert_eq!(t.server_name.as_deref(), Some("pq.example.test"));
    assert_eq!(t.alpn_offered, vec!["h2", "http/1.1"]);
    assert_eq!((t.ja3, t.ja4), (None, None));
    assert_eq!(t.cipher, Some(0x1301));
    assert!(t.ja3s.is_some() && t.ja4s.is_some());

    // Without the ServerHello, and cut before supported_versions: no version claimed.
    let d = crate::proto::detect(false, &whole[..1448], b"", 443).unwrap();
    assert_eq!(d.info.as_deref(), Some("sni pq.example.test"));
    let t = d.tls.unwrap();
    assert_eq!((t.version, t.client_hello_truncated), (None, Some(true)));

    // A whole hello says it was whole.
    let d = crate::proto::detect(false, &whole, b"", 443).unwrap();
    let t = d.tls.unwrap();
    assert_eq!(t.client_hello_truncated, Some(false));
    assert_eq!(
        t.ja4.as_deref(),
        Some("t13d0516h2_e133e205ac38_08899408487c")
    );
    // No ClientHello read, no verdict on it.
    let d = crate::proto::detect(false, b"\x16\x03\x01\x00\x05\x02", &pq_server_hello(), 443);
    assert_eq!(d.unwrap().tls.unwrap().client_hello_truncated, None);
}

#[test]
fn a_backslash_in_the_server_name_is_escaped_like_the_rest() {
    use build::*;
    let mut sni = vec![0];
    sni.extend_from_slice(&vec16(b"a\\x41\x01.test"));
    let body = client_hello_body(&[0x1301], &[ext(0x0000, &vec16(&sni))]);
    let hello = records(&handshake(1, &body), 16384);
    let h = parse_client_hello(&hello).unwrap();
    // `\x41` sent literally is not the byte 0x41 ("A"): every backslash shown starts an escape.
    assert_eq!(h.server_name.as_deref(), Some("a\\x5cx41\\x01.test"));
    let d = crate::proto::detect(false, &hello, b"", 443).unwrap();
    assert_eq!(d.info.as_deref(), Some("TLS 1.2 sni a\\x5cx41\\x01.test"));
    assert_eq!(
        d.tls.unwrap().server_name.as_deref(),
        Some("a\\x5cx41\\x01.test")
    );
}
