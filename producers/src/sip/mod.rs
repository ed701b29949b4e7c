//! Kamailio as a monitored SIP server (groundwork for issue 10, facts in
//! `docs/sip-draft.md`).
//!
//! Kamailio relays one JSON event per SIP situation over evapi (netstring framing) and
//! answers JSON-RPC over HTTP for resynchronisation. This module is a library only: it
//! is not wired into the monitor yet.
//!
//! - [`netstring`]: incremental `<len>:<payload>,` decoder and encoder.
//! - [`event`]: the evapi JSON events, decoded by name.
//! - [`model`]: per-server state machine from evapi events to call events.
//! - [`resync`]: what to output so the model matches `dlg.list` and `ul.dump`.
//! - [`rpc`]: the I/O edge: JSON-RPC client and the evapi reader task.

pub mod event;
pub mod model;
pub mod netstring;
pub mod resync;
pub mod rpc;

/// Errors of the Kamailio edge; every message says what failed and where.
#[derive(Debug, thiserror::Error)]
pub enum SipError {
    #[error("cannot connect to Kamailio at {addr}: {source}")]
    Connect { addr: String, source: std::io::Error },
    #[error("the evapi connection to {addr} failed: {source}")]
    Io { addr: String, source: std::io::Error },
    #[error("the evapi stream from {addr} lost its framing ({source}); reconnect and resynchronise")]
    Framing { addr: String, source: netstring::NetstringError },
    #[error("more than {max} evapi events are waiting for the consumer; the connection was closed so Kamailio is never stalled")]
    Overrun { max: usize },
    #[error("JSON-RPC {method} at {url} did not answer within {timeout_ms} ms")]
    Timeout { method: String, url: String, timeout_ms: u64 },
    #[error("JSON-RPC {method} at {url} failed: {message}")]
    Rpc { method: String, url: String, message: String },
}
