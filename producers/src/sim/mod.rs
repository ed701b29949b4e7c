//! A simulated T-Server: serves the CTI link protocol, delivers events of registered
//! DNs, and generates them from seeded random traffic or plays a scenario file exactly.

pub mod model;
pub mod scenario;
pub mod server;
pub mod switch;
pub mod traffic;

pub use model::{Action, CallModel};
pub use scenario::{parse_scenario, Step};
pub use server::{drop_links, query_status, run, serve, switch_link, SimConfig, SimMode};
pub use switch::Switch;
pub use switch::Wire;
