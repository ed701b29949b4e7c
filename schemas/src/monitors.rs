//! `monitors` topic: monitor start, heartbeats with load, stop; dispatcher heartbeats.
//! Key: monitor id or dispatcher instance.

use apache_avro::types::Value;
use serde::{Deserialize, Serialize};

use crate::codec::{member, parse, unknown_member, CodecError, Event, Fields};
use crate::registry::SchemaKind;

/// A monitor process started.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Started {
    pub host: String,
    pub pid: i32,
}

/// Periodic liveness and load report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Slots (partitions of `assignments`) the monitor owns.
    pub slots: Vec<i32>,
    /// T-Servers it is assigned.
    pub tservers: i32,
    /// DNs it has registered.
    pub dns: i32,
    /// Open CTI link sessions (schema v2; `None` when written by v1).
    #[serde(default)]
    pub sessions: Option<i32>,
    /// Resident memory in bytes (schema v2; `None` when written by v1).
    #[serde(default)]
    pub rss_bytes: Option<i64>,
    /// T-Servers the monitor holds now (schema v3; `None` when written by v1 or v2).
    #[serde(default)]
    pub tserver_ids: Option<Vec<i32>>,
    /// T-Servers its slots assign to it that it waits to connect because another monitor
    /// still holds them (schema v5; `None` before).
    #[serde(default)]
    pub wanted: Option<Vec<i32>>,
}

/// A monitor is shutting down on purpose.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stopping {
    pub reason: String,
}

/// A dispatcher is alive and owns these `config` partitions (schema v4).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DispatcherHeartbeat {
    pub partitions: Vec<i32>,
}

/// What the monitor (or dispatcher) reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum MonitorBody {
    Started(Started),
    Heartbeat(Heartbeat),
    Stopping(Stopping),
    DispatcherHeartbeat(DispatcherHeartbeat),
}

/// A value of the `monitors` topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitorEvent {
    pub monitor_id: String,
    pub at_ms: i64,
    pub body: MonitorBody,
}

impl Event for MonitorEvent {
    const KIND: SchemaKind = SchemaKind::Monitors;
    const UNION_FIELD: &'static str = "body";

    fn head(&self) -> Vec<(&'static str, Value)> {
        vec![("monitor_id", Value::String(self.monitor_id.clone())), ("at_ms", Value::Long(self.at_ms))]
    }

    fn member(&self) -> Result<(&'static str, Value), CodecError> {
        match &self.body {
            MonitorBody::Started(b) => member("Started", b),
            MonitorBody::Heartbeat(b) => member("Heartbeat", b),
            MonitorBody::Stopping(b) => member("Stopping", b),
            MonitorBody::DispatcherHeartbeat(b) => member("DispatcherHeartbeat", b),
        }
    }

    fn from_parts(head: &mut Fields, name: &str, value: &Value) -> Result<Self, CodecError> {
        let body = match name {
            "Started" => MonitorBody::Started(parse(value)?),
            "Heartbeat" => MonitorBody::Heartbeat(parse(value)?),
            "Stopping" => MonitorBody::Stopping(parse(value)?),
            "DispatcherHeartbeat" => MonitorBody::DispatcherHeartbeat(parse(value)?),
            other => return Err(unknown_member(Self::KIND, other)),
        };
        Ok(MonitorEvent { monitor_id: head.string("monitor_id")?, at_ms: head.long("at_ms")?, body })
    }
}
