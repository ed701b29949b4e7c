//! Edges that turn outside facts into events: configuration sources, the CTI link
//! protocol and its client, and simulators of T-Servers.

pub mod config;
pub mod cti;
pub mod link;
pub mod sim;
pub mod sip;
