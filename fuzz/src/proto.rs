//! Decoding protobuf messages the way the ttrpc glue does (`Message::parse_from_bytes`), with a
//! round-trip check: whatever decodes must encode and decode back to the same message, or the
//! two sides of a connection could read one message differently.

use protobuf::Message;

/// `bytes` as an `M`, if they are one; panics when the decoded message does not survive an
/// encode and decode unchanged (and with the size the encoder computed for it).
pub fn decode<M: Message + std::fmt::Debug>(bytes: &[u8]) -> Option<M> {
    let message = M::parse_from_bytes(bytes).ok()?;
    let encoded = message
        .write_to_bytes()
        .expect("a decoded message encodes again");
    assert_eq!(
        encoded.len() as u64,
        message.compute_size(),
        "compute_size disagrees with the encoding of {message:?}"
    );
    let again = M::parse_from_bytes(&encoded).expect("a re-encoded message decodes");
    assert_eq!(
        message, again,
        "a message changed in an encode/decode round trip"
    );
    Some(message)
}
