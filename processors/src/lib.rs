//! Processors: the dispatcher (config → assignment commands) and the monitor
//! (assignment commands → CTI links → call events).

pub mod dispatcher;
pub mod monitor;
