//! A small JSON writer the JSON encoders share for their flow records, and the fragments it
//! copies: the parts of a record that are the same for every event of a process, of the host
//! or of a flow's application facts, rendered once ([`super::fragments`]).
//!
//! Keys are the encoders' own ASCII names and are written as they are; values go through
//! serde_json (strings escaped, integers and floats as serde_json writes them), except values
//! whose text is known to need no escaping (times, addresses, the encoders' own vocabulary),
//! which are written straight. Every byte is what a serde-derived struct would have written.
use std::{
    io::Write as _,
    net::{IpAddr, Ipv4Addr},
};

use serde::Serialize;

use super::time::Rfc3339;
use crate::event::WallTime;

/// Writes JSON objects and arrays member by member into a record.
pub(crate) struct Json<'a> {
    out: &'a mut Vec<u8>,
    /// Nothing written yet in the innermost open object or array: the next member has no comma.
    first: bool,
}

impl<'a> Json<'a> {
    /// A writer at the start of a record: the first thing it writes is the top-level object.
    pub(crate) fn new(out: &'a mut Vec<u8>) -> Self {
        Self { out, first: true }
    }

    /// A writer of a fragment: what it writes follows a member, so its first member starts
    /// with a comma ([`Json::splice`] drops it where the fragment opens an object).
    pub(crate) fn after_member(out: &'a mut Vec<u8>) -> Self {
        Self { out, first: false }
    }

    /// Opens an object as a value (`{`).
    #[inline]
    pub(crate) fn begin(&mut self) {
        self.out.push(b'{');
        self.first = true;
    }

    /// Closes the innermost object (`}`).
    #[inline]
    pub(crate) fn end(&mut self) {
        self.out.push(b'}');
        self.first = false;
    }

    /// `"key":`, after a comma unless it is the first member.
    #[inline]
    pub(crate) fn key(&mut self, key: &str) {
        debug_assert!(!key.bytes().any(|c| c == b'"' || c == b'\\' || c < b' '));
        self.separate();
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    /// `"key":{`: an object member, closed with [`Json::end`].
    pub(crate) fn object(&mut self, key: &str) {
        self.key(key);
        self.begin();
    }

    /// `"key":[`: an array member; write each element after [`Json::element`], then
    /// [`Json::end_array`].
    pub(crate) fn array(&mut self, key: &str) {
        self.key(key);
        self.out.push(b'[');
        self.first = true;
    }

    /// Starts the next element of the innermost array.
    #[inline]
    pub(crate) fn element(&mut self) {
        self.separate();
    }

    #[inline]
    pub(crate) fn end_array(&mut self) {
        self.out.push(b']');
        self.first = false;
    }

    #[inline]
    fn separate(&mut self) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
    }

    /// Any value, as serde_json writes it.
    pub(crate) fn value<T: Serialize + ?Sized>(&mut self, value: &T) {
        // Serializing strings, numbers and sequences of them into a Vec cannot fail.
        let _ = value.serialize(&mut serde_json::Serializer::new(&mut *self.out));
    }

    /// `"key":value`, the value as serde_json writes it.
    pub(crate) fn field<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) {
        self.key(key);
        self.value(value);
    }

    /// `"key":{...` an object as serde_json writes it, left open for more members: close it
    /// with [`Json::end`].
    pub(crate) fn open<T: Serialize + ?Sized>(&mut self, key: &str, object: &T) {
        self.key(key);
        self.value(object);
        let closed = self.out.pop();
        debug_assert_eq!(closed, Some(b'}'), "`{key}` is not an object");
        self.first = self.out.last() == Some(&b'{');
    }

    /// `"key":value` when there is a value; nothing otherwise (serde's
    /// `skip_serializing_if = "Option::is_none"`).
    pub(crate) fn opt<T: Serialize>(&mut self, key: &str, value: Option<T>) {
        if let Some(v) = value {
            self.field(key, &v);
        }
    }

    /// `"key":"text"` for text that needs no escaping: the encoders' own vocabulary.
    #[inline]
    pub(crate) fn name(&mut self, key: &str, text: &str) {
        self.key(key);
        self.plain_str(text);
    }

    /// [`Json::name`] when there is a name.
    pub(crate) fn opt_name(&mut self, key: &str, text: Option<&str>) {
        if let Some(text) = text {
            self.name(key, text);
        }
    }

    /// `"text"` for text that needs no escaping.
    #[inline]
    pub(crate) fn plain_str(&mut self, text: &str) {
        debug_assert!(
            !text.bytes().any(|c| c == b'"' || c == b'\\' || c < b' '),
            "{text:?} needs escaping"
        );
        self.out.push(b'"');
        self.out.extend_from_slice(text.as_bytes());
        self.out.push(b'"');
    }

    /// `"key":"2026-11-23T13:05:50.542313Z"`.
    pub(crate) fn time(&mut self, key: &str, t: WallTime) {
        self.key(key);
        self.out.push(b'"');
        self.out.extend_from_slice(Rfc3339::new(t).as_bytes());
        self.out.push(b'"');
    }

    /// [`Json::time`] when there is a time.
    pub(crate) fn opt_time(&mut self, key: &str, t: Option<WallTime>) {
        if let Some(t) = t {
            self.time(key, t);
        }
    }

    /// `"key":"10.0.0.5"`.
    pub(crate) fn ip(&mut self, key: &str, ip: IpAddr) {
        self.key(key);
        self.ip_value(ip);
    }

    /// An address as serde writes it (its `Display` text, as a string).
    pub(crate) fn ip_value(&mut self, ip: IpAddr) {
        self.out.push(b'"');
        self.ip_text(ip);
        self.out.push(b'"');
    }

    /// An address's `Display` text, within a string being written with [`Json::raw`].
    pub(crate) fn ip_text(&mut self, ip: IpAddr) {
        match ip {
            IpAddr::V4(v4) => ipv4(self.out, v4),
            // Writing to a Vec cannot fail.
            IpAddr::V6(v6) => {
                let _ = write!(self.out, "{v6}");
            }
        }
    }

    /// Bytes as they are: JSON text the caller knows to be valid where it goes.
    #[inline]
    pub(crate) fn raw(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    /// Copies a fragment written by an [`Json::after_member`] writer here: its leading comma
    /// is dropped where it opens an object or array.
    pub(crate) fn splice(&mut self, fragment: &[u8]) {
        let Some((&head, tail)) = fragment.split_first() else {
            return;
        };
        if self.first && head == b',' {
            self.out.extend_from_slice(tail);
        } else {
            self.out.extend_from_slice(fragment);
        }
        self.first = false;
    }
}

/// Dotted decimal, as `Ipv4Addr`'s `Display` writes it.
fn ipv4(out: &mut Vec<u8>, ip: Ipv4Addr) {
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        if octet >= 100 {
            out.push(b'0' + octet / 100);
        }
        if octet >= 10 {
            out.push(b'0' + octet / 10 % 10);
        }
        out.push(b'0' + octet % 10);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_as_serde_writes_them() {
        for ip in [
            "0.0.0.0",
            "10.0.0.5",
            "93.184.215.14",
            "255.255.255.255",
            "100.9.10.99",
            "::1",
            "::ffff:10.0.0.1",
            "2001:db8::8a2e:370:7334",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            let mut out = Vec::new();
            Json::new(&mut out).ip_value(ip);
            assert_eq!(out, serde_json::to_vec(&ip).unwrap(), "{ip}");
        }
    }

    #[test]
    fn members_objects_arrays_and_fragments() {
        let mut fragment = Vec::new();
        let mut f = Json::after_member(&mut fragment);
        f.field("b", "x\"y");
        f.opt("none", None::<u32>);
        f.opt("c", Some(1.5f64));
        assert_eq!(fragment, br#","b":"x\"y","c":1.5"#);

        let mut out = Vec::new();
        let mut w = Json::new(&mut out);
        w.begin();
        w.object("o");
        w.splice(&fragment);
        w.end();
        w.field("n", &7u32);
        w.array("a");
        for v in [1u8, 2] {
            w.element();
            w.value(&v);
        }
        w.end_array();
        w.splice(b"");
        w.splice(&fragment);
        w.time("t", WallTime(1_700_000_000_123_456_999));
        w.end();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"o":{"b":"x\"y","c":1.5},"n":7,"a":[1,2],"b":"x\"y","c":1.5,"t":"2023-11-14T22:13:20.123456Z"}"#
        );
    }
}
