//! Processors: the dispatcher (config → assignment commands) and the monitor
//! (assignment commands → CTI links → call events), and the cluster view both share.

pub mod cluster;
pub mod dispatcher;
pub mod monitor;
pub mod status;
