//! Netwatch event types and their Avro codec.
//!
//! Every topic value is one Avro record with a union of event records, written in
//! Avro single-object encoding (`C3 01`, the 8-byte CRC-64-AVRO fingerprint of the
//! writer's schema, the body). Every released schema version lives in `avro/` and is
//! registered in [`registry`], so records written by any version stay readable.

pub mod assignments;
pub mod calls;
pub mod codec;
pub mod config;
pub mod monitors;
pub mod registry;

pub use codec::{decode, encode, CodecError, Event};
pub use registry::SchemaKind;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
