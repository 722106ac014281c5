//! Byte-string names (FORMAT.md §1.3): file names, symlink targets and xattr names are
//! arbitrary bytes, written as `"n":STRING` when they are valid UTF-8 and `"nb":BASE64`
//! otherwise (`t`/`tb` for targets). They order by their bytes and display escaped, so a
//! name never reaches a terminal, a log line or a JSON document as raw bytes.

use std::borrow::Borrow;
use std::fmt;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::canonical::{b64_decode, b64_encode};
use super::{FormatError, Result};

/// The longest file name Linux allows (`NAME_MAX`), also the longest xattr name.
pub const NAME_MAX: usize = 255;
/// The longest symlink target (`PATH_MAX` less the NUL).
pub const TARGET_MAX: usize = 4095;

/// A directory entry's name: 1–255 bytes, no `/`, no NUL, not `.` or `..`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(Box<[u8]>);

/// A symlink target: 1–4095 bytes, no NUL.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Target(Box<[u8]>);

/// An extended attribute's name: 1–255 bytes, no NUL (the namespace is the fs core's
/// business: only `user.` is stored, §4.3).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct XattrName(Box<[u8]>);

impl Name {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Name> {
        let bytes = bytes.into();
        let what = |why: &str| FormatError::invalid(format!("name \"{}\" {why}", escape(&bytes)));
        if bytes.is_empty() {
            return Err(FormatError::invalid("a name is empty"));
        }
        if bytes.len() > NAME_MAX {
            return Err(what("is longer than 255 bytes"));
        }
        if bytes.contains(&b'/') {
            return Err(what("contains '/'"));
        }
        if bytes.contains(&0) {
            return Err(what("contains NUL"));
        }
        if bytes == b"." || bytes == b".." {
            return Err(what("is reserved"));
        }
        Ok(Name(bytes.into_boxed_slice()))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl Target {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Target> {
        let bytes = bytes.into();
        if bytes.is_empty() || bytes.len() > TARGET_MAX || bytes.contains(&0) {
            return Err(FormatError::invalid(format!(
                "symlink target \"{}\" is not 1-4095 bytes without NUL",
                escape(&bytes)
            )));
        }
        Ok(Target(bytes.into_boxed_slice()))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl XattrName {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<XattrName> {
        let bytes = bytes.into();
        if bytes.is_empty() || bytes.len() > NAME_MAX || bytes.contains(&0) {
            return Err(FormatError::invalid(format!(
                "xattr name \"{}\" is not 1-255 bytes without NUL",
                escape(&bytes)
            )));
        }
        Ok(XattrName(bytes.into_boxed_slice()))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// The two members a byte string is written as: `(STRING, BASE64)`, exactly one `Some`.
pub(crate) fn to_members(bytes: &[u8]) -> (Option<String>, Option<String>) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (Some(s.to_owned()), None),
        Err(_) => (None, Some(b64_encode(bytes))),
    }
}

/// Reads a byte string back from its two members (`n`/`nb`, `t`/`tb`): exactly one must be
/// present, and the base64 form must not hold valid UTF-8 (one encoding per name).
pub(crate) fn from_members(
    text: Option<String>,
    base64: Option<String>,
    member: &str,
) -> Result<Vec<u8>> {
    match (text, base64) {
        (Some(s), None) => Ok(s.into_bytes()),
        (None, Some(b)) => {
            let bytes = b64_decode(&b, member)?;
            if std::str::from_utf8(&bytes).is_ok() {
                return Err(FormatError::invalid(format!(
                    "\"{member}b\" holds valid UTF-8 \"{}\"; it must be written as \"{member}\"",
                    escape(&bytes)
                )));
            }
            Ok(bytes)
        }
        (Some(_), Some(_)) => Err(FormatError::invalid(format!(
            "both \"{member}\" and \"{member}b\" are present"
        ))),
        (None, None) => Err(FormatError::invalid(format!(
            "neither \"{member}\" nor \"{member}b\" is present"
        ))),
    }
}

/// `{"n":…}` or `{"nb":…}`: the member a name is written as (§1.3).
#[derive(Serialize, Deserialize)]
struct NameMember {
    #[serde(skip_serializing_if = "Option::is_none")]
    n: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nb: Option<String>,
}

impl Serialize for Name {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let (n, nb) = to_members(&self.0);
        NameMember { n, nb }.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Name, D::Error> {
        let m = NameMember::deserialize(d)?;
        let bytes = from_members(m.n, m.nb, "n").map_err(D::Error::custom)?;
        Name::new(bytes).map_err(D::Error::custom)
    }
}

/// Bytes for people: valid UTF-8 as is, except `\` as `\\`, control and invisible
/// formatting characters as `\n`, `\t`, `\r` or `\u{…}`, and each byte of invalid UTF-8 as
/// `\xNN`. Safe to print to a terminal and to put in a JSON string.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if is_unsafe_char(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Characters that would move the cursor, reorder or hide text on a terminal.
fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c as u32,
            0x200B..=0x200F | 0x2028..=0x202E | 0x2060..=0x2069 | 0xFEFF)
}

// Bytewise `Ord` on the boxed bytes is `[u8]`'s order, so maps keyed by these types can be
// searched with plain byte slices.
impl Borrow<[u8]> for Name {
    fn borrow(&self) -> &[u8] {
        &self.0
    }
}
impl Borrow<[u8]> for XattrName {
    fn borrow(&self) -> &[u8] {
        &self.0
    }
}

macro_rules! display_escaped {
    ($t:ty) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&escape(&self.0))
            }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "\"{}\"", escape(&self.0))
            }
        }
    };
}
display_escaped!(Name);
display_escaped!(Target);
display_escaped!(XattrName);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_outside_the_linux_rules_are_refused() {
        for bad in [&b""[..], b".", b"..", b"a/b", b"a\0b", &[b'a'; 256]] {
            assert!(Name::new(bad.to_vec()).is_err(), "{}", escape(bad));
        }
        assert!(Name::new(vec![b'a'; 255]).is_ok());
        assert!(Name::new(b"...".to_vec()).is_ok());
    }

    #[test]
    fn names_display_escaped_never_raw() {
        let n = Name::new(b"a\xff\n\\b\x1b[31m\xe2\x80\xae".to_vec()).unwrap();
        assert_eq!(n.to_string(), "a\\xff\\n\\\\b\\u{1b}[31m\\u{202e}");
        assert_eq!(
            Name::new("résumé".as_bytes()).unwrap().to_string(),
            "résumé"
        );
    }

    #[test]
    fn base64_member_holding_utf8_is_refused() {
        let err = from_members(None, Some(b64_encode(b"abc")), "n").unwrap_err();
        assert!(err.to_string().contains("must be written as"), "{err}");
        assert!(from_members(Some("a".into()), Some("YQ==".into()), "n").is_err());
        assert!(from_members(None, None, "n").is_err());
    }

    #[test]
    fn targets_may_hold_slashes_but_not_nul() {
        assert!(Target::new(b"../a/b".to_vec()).is_ok());
        assert!(Target::new(b"a\0".to_vec()).is_err());
        assert!(Target::new(vec![b'a'; 4096]).is_err());
        assert!(XattrName::new(b"user.a/b".to_vec()).is_ok());
    }
}
