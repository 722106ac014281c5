//! Canonical JSON (FORMAT.md §1.2). serde_json writes exactly the spec's form (no
//! whitespace, minimal escapes with lowercase `\u00XX`, decimal integers) as long as every
//! struct lists its members in the spec's order and skips absent optional members; this
//! module holds the helpers the wire structs share.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{FormatError, Result};

/// The canonical bytes of a wire struct.
pub(crate) fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing plain structs of strings and integers into a Vec cannot fail.
    serde_json::to_vec(value).expect("wire structs always serialize")
}

pub(crate) fn from_json<T: DeserializeOwned>(bytes: &[u8], what: &'static str) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| FormatError::Json {
        what,
        detail: e.to_string(),
    })
}

/// RFC 4648 §4 base64, standard alphabet, padded.
pub(crate) fn b64_encode(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Strict base64: padding required, no stray bits, so each byte string has one form.
pub(crate) fn b64_decode(text: &str, member: &str) -> Result<Vec<u8>> {
    STANDARD
        .decode(text)
        .map_err(|e| FormatError::invalid(format!("\"{member}\" is not base64: {e}")))
}

/// Decodes base64 that must hold exactly `N` bytes.
pub(crate) fn b64_array<const N: usize>(text: &str, member: &str) -> Result<[u8; N]> {
    let bytes = b64_decode(text, member)?;
    <[u8; N]>::try_from(bytes.as_slice()).map_err(|_| {
        FormatError::invalid(format!(
            "\"{member}\" holds {} bytes, expected {N}",
            bytes.len()
        ))
    })
}

/// Serde helper for a member that is required but may be `null` (`"prev":null`).
pub(crate) mod required_nullable {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<Option<T>, D::Error> {
        Option::<T>::deserialize(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_as_the_spec_says() {
        let s = "\"\\\u{8}\t\n\u{c}\r\u{1}\u{1f}\u{7f}é\u{2028}";
        assert_eq!(
            String::from_utf8(to_json(&s)).unwrap(),
            "\"\\\"\\\\\\b\\t\\n\\f\\r\\u0001\\u001f\u{7f}é\u{2028}\""
        );
    }

    #[test]
    fn base64_is_padded_and_strict() {
        assert_eq!(b64_encode(&[0xff, 0xfe]), "//4=");
        assert!(b64_decode("//4", "x").is_err());
        assert!(
            b64_decode("//5=", "x").is_err(),
            "stray bits must be refused"
        );
        assert!(b64_array::<2>("//4=", "x").is_ok());
        assert!(b64_array::<3>("//4=", "x").is_err());
    }
}
