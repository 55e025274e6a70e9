//! Readable text for ciborium's errors, whose `Display` is their `Debug`
//! (`Semantic(None, "invalid type: ...")`): users should see serde's message and where it was.

use std::fmt::Debug;

use super::Error;

/// What went wrong decoding a message, without ciborium's variant names.
///
/// Messages are decoded from byte slices, where reading fails only at the end of the slice.
pub(crate) fn describe_decode<E: Debug>(e: &ciborium::de::Error<E>) -> String {
    use ciborium::de::Error::{Io, RecursionLimitExceeded, Semantic, Syntax};
    match e {
        Io(_) => "the message ends inside a CBOR value".into(),
        Syntax(at) => format!("malformed CBOR at byte {at}"),
        Semantic(Some(at), message) => format!("{message} (at byte {at})"),
        Semantic(None, message) => message.clone(),
        RecursionLimitExceeded => "the value is nested too deeply".into(),
    }
}

/// What went wrong encoding a value, without ciborium's variant names.
pub(crate) fn describe_encode<E: Debug>(e: &ciborium::ser::Error<E>) -> String {
    match e {
        ciborium::ser::Error::Value(message) => message.clone(),
        ciborium::ser::Error::Io(e) => format!("writing the encoding failed: {e:?}"),
    }
}

/// [`Error::Decode`] for a message that does not decode as `T`, naming `T`.
///
/// ciborium's error is not kept as the source: its text is its `Debug`, and all it holds
/// (serde's message and the offset) is in ours.
pub(crate) fn decode_error<T, E: Debug>(e: &ciborium::de::Error<E>) -> Error {
    Error::Decode(format!("{} (decoding {})", describe_decode(e), std::any::type_name::<T>()))
}

/// [`Error::Encode`] for a value ciborium could not encode.
pub(crate) fn encode_error<E: Debug>(e: &ciborium::ser::Error<E>) -> Error {
    Error::Encode(describe_encode(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_type_mismatch_reads_as_serde_says_it_and_names_the_type() {
        let mut map = Vec::new();
        ciborium::into_writer(&std::collections::BTreeMap::from([(1, 2)]), &mut map).unwrap();
        let e = ciborium::from_reader::<String, _>(&map[..]).unwrap_err();
        let text = decode_error::<String, _>(&e).to_string();
        assert_eq!(
            text,
            "could not decode message: invalid type: map, expected string (decoding alloc::string::String)"
        );
    }

    #[test]
    fn a_cut_message_and_garbage_say_so() {
        let e = ciborium::from_reader::<String, _>(&[0x65, b'a'][..]).unwrap_err();
        assert_eq!(describe_decode(&e), "the message ends inside a CBOR value");
        let e = ciborium::from_reader::<u8, _>(&[0x1c][..]).unwrap_err();
        assert!(describe_decode(&e).starts_with("malformed CBOR at byte 0"), "{}", describe_decode(&e));
    }
}
