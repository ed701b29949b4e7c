//! The dispatcher: places T-Servers in slots and routes DN registrations to them.

mod core;
mod runner;

pub use self::core::{Dispatcher, Emitted, MonitorLoad, Settings, TSERVER_WEIGHT};
pub use runner::{run, DispatcherConfig};
