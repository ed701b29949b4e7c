//! `config` topic: T-Servers, DNs and groups created, updated, deleted. Key: T-Server id.

use apache_avro::types::Value;
use serde::{Deserialize, Serialize};

use crate::codec::{member, parse, unknown_member, CodecError, Event, Fields};
use crate::registry::SchemaKind;

/// A telephony server that monitors connect to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TServer {
    /// Configuration id (DBID) of the T-Server; also the key of its events.
    pub id: i32,
    pub name: String,
    pub host: String,
    /// The CTI link's port, or Kamailio's evapi port.
    pub port: i32,
    /// How the monitor talks to it (v2; CTI before).
    #[serde(default)]
    pub kind: ServerKind,
    /// Kamailio: the JSON-RPC URL (v2); `None`: `http://host:(port + 1)/RPC`.
    #[serde(default)]
    pub rpc: Option<String>,
}

impl TServer {
    /// A T-Server reached over a CTI link.
    pub fn cti(id: i32, name: impl Into<String>, host: impl Into<String>, port: i32) -> TServer {
        TServer { id, name: name.into(), host: host.into(), port, kind: ServerKind::Cti, rpc: None }
    }

    /// `host:port` of the CTI link (or of evapi).
    pub fn endpoint(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Kamailio's JSON-RPC URL: the configured one, else `http://host:(port + 1)/RPC`.
    pub fn rpc_url(&self) -> String {
        self.rpc.clone().unwrap_or_else(|| format!("http://{}:{}/RPC", self.host, self.port + 1))
    }
}

/// How a monitor talks to a server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ServerKind {
    /// A T-Server's CTI link (docs/cti-link.md).
    #[default]
    Cti,
    /// Kamailio: events over evapi, resynchronisation over JSON-RPC (docs/sip.md).
    Kamailio,
}

impl ServerKind {
    /// The name in commands and import files.
    pub fn as_str(self) -> &'static str {
        match self {
            ServerKind::Cti => "cti",
            ServerKind::Kamailio => "kamailio",
        }
    }
}

impl std::fmt::Display for ServerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ServerKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cti" => Ok(ServerKind::Cti),
            "kamailio" => Ok(ServerKind::Kamailio),
            other => Err(format!("unknown server kind {other:?} (cti or kamailio)")),
        }
    }
}

/// Kind of directory number, as in Genesys configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DnType {
    Extension,
    AcdPosition,
    AcdQueue,
    RoutingPoint,
}

impl DnType {
    /// Every type, in schema order.
    pub const ALL: [DnType; 4] = [DnType::Extension, DnType::AcdPosition, DnType::AcdQueue, DnType::RoutingPoint];

    /// Lower-case name used on the command line and in JSON files.
    pub fn as_str(self) -> &'static str {
        match self {
            DnType::Extension => "extension",
            DnType::AcdPosition => "acd-position",
            DnType::AcdQueue => "acd-queue",
            DnType::RoutingPoint => "routing-point",
        }
    }
}

impl std::str::FromStr for DnType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DnType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| format!("unknown DN type {s:?} (expected extension, acd-position, acd-queue or routing-point)"))
    }
}

/// A directory number configured on a T-Server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dn {
    /// Configuration id, unique across all DNs.
    pub dbid: i32,
    pub tserver: i32,
    pub number: String,
    pub dn_type: DnType,
}

impl Dn {
    /// Its identity, as a deletion names it.
    pub fn identity(&self) -> DnRef {
        DnRef { dbid: self.dbid, tserver: self.tserver, number: self.number.clone() }
    }
}

/// Identity of a DN.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnRef {
    pub dbid: i32,
    pub tserver: i32,
    pub number: String,
}

/// Identity of a T-Server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TServerRef {
    pub id: i32,
}

/// Whose statistics a group keeps together (v3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GroupKind {
    /// Agents, by agent id: wherever they log in.
    Agent,
    /// DNs of the T-Server, by number: the positions behind a queue, say.
    Dn,
}

impl GroupKind {
    /// The name in commands and import files.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupKind::Agent => "agent",
            GroupKind::Dn => "dn",
        }
    }
}

impl std::str::FromStr for GroupKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "agent" => Ok(GroupKind::Agent),
            "dn" => Ok(GroupKind::Dn),
            other => Err(format!("unknown group kind {other:?} (agent or dn)")),
        }
    }
}

/// A group of a T-Server (v3): agents or DNs whose statistics are kept together.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// Configuration id, unique across all groups.
    pub id: i32,
    pub tserver: i32,
    pub name: String,
    pub kind: GroupKind,
    /// Agent ids (an agent group) or DN numbers (a DN group), in the order given.
    pub members: Vec<String>,
}

/// Identity of a group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRef {
    pub id: i32,
    pub tserver: i32,
}

/// What changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ConfigChange {
    TServerCreated(TServer),
    TServerUpdated(TServer),
    TServerDeleted(TServerRef),
    DnCreated(Dn),
    DnUpdated(Dn),
    DnDeleted(DnRef),
    GroupCreated(Group),
    GroupUpdated(Group),
    GroupDeleted(GroupRef),
}

impl ConfigChange {
    /// The T-Server this change belongs to: the record key.
    pub fn tserver_id(&self) -> i32 {
        match self {
            ConfigChange::TServerCreated(t) | ConfigChange::TServerUpdated(t) => t.id,
            ConfigChange::TServerDeleted(t) => t.id,
            ConfigChange::DnCreated(d) | ConfigChange::DnUpdated(d) => d.tserver,
            ConfigChange::DnDeleted(d) => d.tserver,
            ConfigChange::GroupCreated(g) | ConfigChange::GroupUpdated(g) => g.tserver,
            ConfigChange::GroupDeleted(g) => g.tserver,
        }
    }
}

/// A value of the `config` topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigEvent {
    pub event_id: String,
    pub at_ms: i64,
    pub source: String,
    pub change: ConfigChange,
}

impl Event for ConfigEvent {
    const KIND: SchemaKind = SchemaKind::Config;
    const UNION_FIELD: &'static str = "change";

    fn head(&self) -> Vec<(&'static str, Value)> {
        vec![
            ("event_id", Value::String(self.event_id.clone())),
            ("at_ms", Value::Long(self.at_ms)),
            ("source", Value::String(self.source.clone())),
        ]
    }

    fn member(&self) -> Result<(&'static str, Value), CodecError> {
        match &self.change {
            ConfigChange::TServerCreated(t) => member("TServerCreated", t),
            ConfigChange::TServerUpdated(t) => member("TServerUpdated", t),
            ConfigChange::TServerDeleted(t) => member("TServerDeleted", t),
            ConfigChange::DnCreated(d) => member("DnCreated", d),
            ConfigChange::DnUpdated(d) => member("DnUpdated", d),
            ConfigChange::DnDeleted(d) => member("DnDeleted", d),
            ConfigChange::GroupCreated(g) => member("GroupCreated", g),
            ConfigChange::GroupUpdated(g) => member("GroupUpdated", g),
            ConfigChange::GroupDeleted(g) => member("GroupDeleted", g),
        }
    }

    fn from_parts(head: &mut Fields, name: &str, value: &Value) -> Result<Self, CodecError> {
        let change = match name {
            "TServerCreated" => ConfigChange::TServerCreated(parse(value)?),
            "TServerUpdated" => ConfigChange::TServerUpdated(parse(value)?),
            "TServerDeleted" => ConfigChange::TServerDeleted(parse(value)?),
            "DnCreated" => ConfigChange::DnCreated(parse(value)?),
            "DnUpdated" => ConfigChange::DnUpdated(parse(value)?),
            "DnDeleted" => ConfigChange::DnDeleted(parse(value)?),
            "GroupCreated" => ConfigChange::GroupCreated(parse(value)?),
            "GroupUpdated" => ConfigChange::GroupUpdated(parse(value)?),
            "GroupDeleted" => ConfigChange::GroupDeleted(parse(value)?),
            other => return Err(unknown_member(Self::KIND, other)),
        };
        Ok(ConfigEvent { event_id: head.string("event_id")?, at_ms: head.long("at_ms")?, source: head.string("source")?, change })
    }
}
