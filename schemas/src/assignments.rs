//! `assignments` topic: desired state of monitor slots. Partition = slot.
//!
//! Keys are `tserver/<id>` and `dn/<tserver>/<number>`; the latest command per key wins,
//! so replaying a partition from its start yields the slot's desired state.

use apache_avro::types::Value;
use serde::{Deserialize, Serialize};

use crate::codec::{member, parse, unknown_member, CodecError, Event, Fields};
use crate::config::{Dn, DnRef, TServer, TServerRef};
use crate::registry::SchemaKind;

/// A command with desired-state meaning.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Command {
    /// Watch this T-Server (connect to its endpoint).
    AssignTServer(TServer),
    /// Stop watching this T-Server.
    RevokeTServer(TServerRef),
    /// Register this DN on its T-Server's link.
    RegisterDn(Dn),
    /// Unregister this DN.
    UnregisterDn(DnRef),
}

impl Command {
    /// The record key: what the command is about.
    pub fn key(&self) -> String {
        match self {
            Command::AssignTServer(t) => tserver_key(t.id),
            Command::RevokeTServer(t) => tserver_key(t.id),
            Command::RegisterDn(d) => dn_key(d.tserver, &d.number),
            Command::UnregisterDn(d) => dn_key(d.tserver, &d.number),
        }
    }

    /// The T-Server the command concerns.
    pub fn tserver_id(&self) -> i32 {
        match self {
            Command::AssignTServer(t) => t.id,
            Command::RevokeTServer(t) => t.id,
            Command::RegisterDn(d) => d.tserver,
            Command::UnregisterDn(d) => d.tserver,
        }
    }
}

/// Key of a T-Server command.
pub fn tserver_key(id: i32) -> String {
    format!("tserver/{id}")
}

/// Key of a DN command.
pub fn dn_key(tserver: i32, number: &str) -> String {
    format!("dn/{tserver}/{number}")
}

/// A value of the `assignments` topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub command_id: String,
    pub at_ms: i64,
    /// Dispatcher instance that decided it.
    pub dispatcher: String,
    pub command: Command,
}

impl Event for Assignment {
    const KIND: SchemaKind = SchemaKind::Assignments;
    const UNION_FIELD: &'static str = "command";

    fn head(&self) -> Vec<(&'static str, Value)> {
        vec![
            ("command_id", Value::String(self.command_id.clone())),
            ("at_ms", Value::Long(self.at_ms)),
            ("dispatcher", Value::String(self.dispatcher.clone())),
        ]
    }

    fn member(&self) -> Result<(&'static str, Value), CodecError> {
        match &self.command {
            Command::AssignTServer(c) => member("AssignTServer", c),
            Command::RevokeTServer(c) => member("RevokeTServer", c),
            Command::RegisterDn(c) => member("RegisterDn", c),
            Command::UnregisterDn(c) => member("UnregisterDn", c),
        }
    }

    fn from_parts(head: &mut Fields, name: &str, value: &Value) -> Result<Self, CodecError> {
        let command = match name {
            "AssignTServer" => Command::AssignTServer(parse(value)?),
            "RevokeTServer" => Command::RevokeTServer(parse(value)?),
            "RegisterDn" => Command::RegisterDn(parse(value)?),
            "UnregisterDn" => Command::UnregisterDn(parse(value)?),
            other => return Err(unknown_member(Self::KIND, other)),
        };
        Ok(Assignment {
            command_id: head.string("command_id")?,
            at_ms: head.long("at_ms")?,
            dispatcher: head.string("dispatcher")?,
            command,
        })
    }
}
