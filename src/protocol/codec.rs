//! The one serde codec: every argument and result crosses the channel
//! through these two functions.
//!
//! The format is MessagePack ([rmp-serde]), with structs as maps of named
//! fields. It is self-describing, so every serde feature works across the
//! channel (`#[serde(flatten)]`, untagged enums, `skip_serializing_if`,
//! `serde_json::Value`), and the message of a custom serde error is kept.
//!
//! User `Serialize`/`Deserialize` code runs here, so a panic in it is caught
//! and reported as an error for that value, never unwound into procpool.
//!
//! [rmp-serde]: https://docs.rs/rmp-serde

use std::panic::{AssertUnwindSafe, catch_unwind};

use std::io;

use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Serialize};

/// Appends the encoding of `value` to `out`. On failure, `out` may hold a
/// partial encoding; callers truncate (see `items::push_with`).
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), String> {
    match catch_unwind(AssertUnwindSafe(|| rmp_serde::encode::write_named(out, value))) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(payload) => Err(format!("Serialize panicked: {}", panic_text(&*payload))),
    }
}

/// Decodes a whole value from `bytes`; trailing bytes are an error.
///
/// The deserializer reads straight from `bytes` (byte strings and strings
/// are borrowed from it, so a large `Vec<u8>` is copied once, into the
/// value).
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let decoded = catch_unwind(AssertUnwindSafe(|| {
        let mut de = rmp_serde::Deserializer::from_read_ref(bytes);
        let value = T::deserialize(&mut de)?;
        // Anything after the value is an error: it reads as one more value.
        let trailing = match IgnoredAny::deserialize(&mut de) {
            Err(rmp_serde::decode::Error::InvalidMarkerRead(e)) => e.kind() != io::ErrorKind::UnexpectedEof,
            _ => true,
        };
        Ok((value, trailing))
    }));
    match decoded {
        Ok(Ok((_, true))) => Err("bytes left over after the value".to_owned()),
        Ok(Ok((value, false))) => Ok(value),
        Ok(Err(e)) => Err(rmp_serde::decode::Error::to_string(&e)),
        Err(payload) => Err(format!("Deserialize panicked: {}", panic_text(&*payload))),
    }
}

/// The text of a panic payload.
pub(crate) fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic payload that is not a string)".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Deserializer, Serializer};

    #[test]
    fn values_round_trip_appending() {
        let mut buf = vec![0xaa];
        encode(&(7u64, "seven".to_string(), vec![1.5f64]), &mut buf).unwrap();
        let back: (u64, String, Vec<f64>) = decode(&buf[1..]).unwrap();
        assert_eq!(back, (7, "seven".to_string(), vec![1.5]));
    }

    #[test]
    fn trailing_bytes_and_short_input_are_errors() {
        let mut buf = Vec::new();
        encode(&300u32, &mut buf).unwrap();
        buf.push(0);
        assert!(decode::<u32>(&buf).unwrap_err().contains("left over"));
        assert!(decode::<(u64, u64)>(&[1]).is_err());
    }

    #[derive(Debug)]
    struct Grumpy;
    impl Serialize for Grumpy {
        fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            panic!("grumpy serialize")
        }
    }
    impl<'de> Deserialize<'de> for Grumpy {
        fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
            panic!("grumpy deserialize")
        }
    }

    #[test]
    fn every_serde_feature_crosses() {
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        #[serde(untagged)]
        enum Loose {
            Number(u32),
            Text(String),
        }
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Inner {
            b: u8,
        }
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Outer {
            #[serde(skip_serializing_if = "Option::is_none", default)]
            a: Option<u8>,
            #[serde(flatten)]
            inner: Inner,
            loose: Vec<Loose>,
            json: serde_json::Value,
        }
        let value = Outer {
            a: None,
            inner: Inner { b: 2 },
            loose: vec![Loose::Number(1), Loose::Text("x".into())],
            json: serde_json::json!({"k": [1, "two", null, 3.5]}),
        };
        let mut buf = Vec::new();
        encode(&value, &mut buf).unwrap();
        assert_eq!(decode::<Outer>(&buf).unwrap(), value);
    }

    #[test]
    fn custom_error_messages_are_kept() {
        struct Refuses;
        impl Serialize for Refuses {
            fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                Err(serde::ser::Error::custom("no thanks"))
            }
        }
        assert!(
            encode(&Refuses, &mut Vec::new())
                .unwrap_err()
                .contains("no thanks")
        );
        #[derive(Debug)]
        struct Picky;
        impl<'de> Deserialize<'de> for Picky {
            fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
                Err(serde::de::Error::custom("not today"))
            }
        }
        assert!(decode::<Picky>(&[0xc0]).unwrap_err().contains("not today"));
    }

    #[test]
    fn panics_in_user_serde_code_become_errors() {
        let mut buf = Vec::new();
        assert!(
            encode(&Grumpy, &mut buf)
                .unwrap_err()
                .contains("grumpy serialize")
        );
        assert!(decode::<Grumpy>(&[]).unwrap_err().contains("grumpy deserialize"));
    }
}
