//! Keys and values as bytes on the command line and in JSON lines: plain text, hexadecimal or
//! base64 on the way in; on the way out, text where the bytes are UTF-8 and an encoded field
//! (`key_hex`, `value_b64`) where they are not, so every record survives a round trip.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value};

use crate::args::EncodingArgs;

/// How a command-line argument is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// The argument's own bytes.
    Text,
    /// Hexadecimal digits (either case).
    Hex,
    /// Standard base64 with padding.
    Base64,
}

impl Encoding {
    /// The encoding the `--hex` / `--base64` flags ask for.
    pub fn of(args: &EncodingArgs) -> Encoding {
        match (args.hex, args.base64) {
            (true, _) => Encoding::Hex,
            (_, true) => Encoding::Base64,
            _ => Encoding::Text,
        }
    }

    /// Decodes `text`; the error names `what` ("KEY", "VALUE", …).
    pub fn decode(self, text: &str, what: &str) -> Result<Vec<u8>, String> {
        match self {
            Encoding::Text => Ok(text.as_bytes().to_vec()),
            Encoding::Hex => hex::decode(text.trim())
                .map_err(|e| format!("{what} is not hexadecimal ({e}): {text:?}")),
            Encoding::Base64 => BASE64
                .decode(text.trim())
                .map_err(|e| format!("{what} is not base64 ({e}): {text:?}")),
        }
    }
}

/// Bytes for a person to read: the text if it is UTF-8 without control characters, else hex.
pub fn shown(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) if !text.chars().any(char::is_control) => format!("{text:?}"),
        _ => format!("0x{}", hex::encode(bytes)),
    }
}

/// Adds `bytes` to a JSON object as `name` (a string) when they are UTF-8, otherwise as
/// `name_hex` (keys: at most 255 bytes, hex reads well) or `name_b64` (values).
pub fn put_field(object: &mut Map<String, Value>, name: &str, bytes: &[u8], binary_as_hex: bool) {
    match std::str::from_utf8(bytes) {
        Ok(text) => object.insert(name.to_string(), Value::String(text.to_string())),
        Err(_) if binary_as_hex => {
            object.insert(format!("{name}_hex"), Value::String(hex::encode(bytes)))
        }
        Err(_) => object.insert(format!("{name}_b64"), Value::String(BASE64.encode(bytes))),
    };
}

/// Reads `name`, `name_hex` or `name_b64` (exactly one) from a JSON object.
pub fn take_field(object: &Map<String, Value>, name: &str) -> Result<Vec<u8>, String> {
    let forms = [
        (name.to_string(), Encoding::Text),
        (format!("{name}_hex"), Encoding::Hex),
        (format!("{name}_b64"), Encoding::Base64),
    ];
    let mut found = None;
    for (field, encoding) in &forms {
        if let Some(value) = object.get(field) {
            if found.is_some() {
                return Err(format!(
                    "give only one of \"{name}\", \"{name}_hex\" and \"{name}_b64\""
                ));
            }
            let Value::String(text) = value else {
                return Err(format!("\"{field}\" must be a string"));
            };
            found = Some(encoding.decode(text, &format!("\"{field}\""))?);
        }
    }
    found.ok_or_else(|| format!("\"{name}\" (or \"{name}_hex\" / \"{name}_b64\") is missing"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_decode_and_refuse() {
        assert_eq!(Encoding::Hex.decode("00ff", "KEY").unwrap(), vec![0, 255]);
        assert_eq!(
            Encoding::Base64.decode("AP8=", "KEY").unwrap(),
            vec![0, 255]
        );
        assert_eq!(Encoding::Text.decode("ab", "KEY").unwrap(), b"ab".to_vec());
        let err = Encoding::Hex.decode("0g", "KEY").unwrap_err();
        assert!(err.starts_with("KEY is not hexadecimal"), "{err}");
        assert!(Encoding::Base64.decode("***", "VALUE").is_err());
    }

    #[test]
    fn fields_round_trip_text_and_binary() {
        for (bytes, as_hex, field) in [
            (b"plain".to_vec(), true, "key"),
            (vec![0xff, 0x00, 0x80], true, "key_hex"),
            (vec![0xff, 0x00, 0x80], false, "key_b64"),
        ] {
            let mut object = Map::new();
            put_field(&mut object, "key", &bytes, as_hex);
            assert!(object.contains_key(field), "{object:?}");
            assert_eq!(take_field(&object, "key").unwrap(), bytes);
        }
        let mut both = Map::new();
        both.insert("key".into(), Value::String("a".into()));
        both.insert("key_hex".into(), Value::String("61".into()));
        assert!(take_field(&both, "key").unwrap_err().contains("only one"));
        assert!(
            take_field(&Map::new(), "key")
                .unwrap_err()
                .contains("missing")
        );
    }

    #[test]
    fn shown_bytes_are_quoted_text_or_hex() {
        assert_eq!(shown(b"hello"), "\"hello\"");
        assert_eq!(shown(&[0, 1]), "0x0001");
        assert_eq!(shown(b"a\nb"), "0x610a62");
    }
}
