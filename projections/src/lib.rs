//! Projections: DN state, call history and statistics folded from `config` and `calls` into a
//! store, and the query API over them.
//!
//! The folds are pure functions ([`dn_state`], [`call_history`]); the [`runner`] moves
//! records from the log through them into a [`store::Store`], writing rows and source
//! positions together so that any prefix of the log applied twice equals once.

pub mod call_history;
pub mod dn_state;
pub mod http;
pub mod query;
pub mod replay;
pub mod rows;
pub mod runner;
pub mod stat_fold;
pub mod stat_query;
pub mod statistics;
pub mod stats;
pub mod store;
pub mod wallboard;

pub use runner::{run, Projection};
pub use store::{checksum, current_gen, open_store, AnyStore, Store, StoreError};
