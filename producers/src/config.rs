//! The configuration as the `config` log defines it, and validation of changes against it.
//!
//! [`ConfigState`] is a pure fold over config events; every reader of `config` (the
//! config producer validating a command, the dispatcher, projections) uses it.

use std::collections::BTreeMap;

use netwatch_schemas::config::{ConfigChange, Dn, DnRef, Group, GroupKind, GroupRef, ServerKind, TServer};
use serde::Deserialize;

/// Why a configuration change was refused. Each is one sentence for the operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("T-Server {0} already exists; nothing was appended")]
    TServerExists(i32),
    #[error("T-Server {0} does not exist; nothing was appended")]
    UnknownTServer(i32),
    #[error("T-Server {id} still has {dns} DNs; delete them first; nothing was appended")]
    TServerHasDns { id: i32, dns: usize },
    #[error("DBID {dbid} is already used by DN {number} on T-Server {tserver}; nothing was appended")]
    DuplicateDbid { dbid: i32, tserver: i32, number: String },
    #[error("T-Server {tserver} already has DN {number}; nothing was appended")]
    DnExists { tserver: i32, number: String },
    #[error("T-Server {tserver} has no DN {number}; nothing was appended")]
    UnknownDn { tserver: i32, number: String },
    #[error("DN {number} on T-Server {tserver} has DBID {actual}, not {given}; nothing was appended")]
    DbidMismatch { tserver: i32, number: String, actual: i32, given: i32 },
    #[error("T-Server {id} still has {groups} groups; delete them first; nothing was appended")]
    TServerHasGroups { id: i32, groups: usize },
    #[error("group {id} already exists (on T-Server {tserver}); nothing was appended")]
    GroupExists { id: i32, tserver: i32 },
    #[error("T-Server {tserver} has no group {id}; nothing was appended")]
    UnknownGroup { id: i32, tserver: i32 },
    #[error("{0}; nothing was appended")]
    Invalid(String),
}

/// Current T-Servers and DNs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigState {
    pub tservers: BTreeMap<i32, TServer>,
    /// DNs by (T-Server, number). Read it; change it through [`ConfigState::accept`] (or
    /// build with [`ConfigState::from_parts`]), which keeps the DBID index in step.
    pub dns: BTreeMap<(i32, String), Dn>,
    /// (T-Server, number) of each DN by DBID: the uniqueness check without a scan.
    by_dbid: BTreeMap<i32, (i32, String)>,
    /// Groups by id (unique across T-Servers, like DBIDs).
    pub groups: BTreeMap<i32, Group>,
}

impl ConfigState {
    /// A state holding these T-Servers and DNs (as saved by a snapshot).
    pub fn from_parts(tservers: impl IntoIterator<Item = TServer>, dns: impl IntoIterator<Item = Dn>) -> Self {
        let mut state = ConfigState { tservers: tservers.into_iter().map(|t| (t.id, t)).collect(), ..ConfigState::default() };
        for d in dns {
            state.by_dbid.insert(d.dbid, (d.tserver, d.number.clone()));
            state.dns.insert((d.tserver, d.number.clone()), d);
        }
        state
    }

    fn apply_unchecked(&mut self, change: &ConfigChange) {
        match change {
            ConfigChange::TServerCreated(t) | ConfigChange::TServerUpdated(t) => {
                self.tservers.insert(t.id, t.clone());
            }
            ConfigChange::TServerDeleted(t) => {
                self.tservers.remove(&t.id);
            }
            ConfigChange::DnCreated(d) | ConfigChange::DnUpdated(d) => {
                if let Some(old) = self.dns.insert((d.tserver, d.number.clone()), d.clone()) {
                    self.by_dbid.remove(&old.dbid);
                }
                self.by_dbid.insert(d.dbid, (d.tserver, d.number.clone()));
            }
            ConfigChange::DnDeleted(d) => {
                if let Some(old) = self.dns.remove(&(d.tserver, d.number.clone())) {
                    self.by_dbid.remove(&old.dbid);
                }
            }
            ConfigChange::GroupCreated(g) | ConfigChange::GroupUpdated(g) => {
                self.groups.insert(g.id, g.clone());
            }
            ConfigChange::GroupDeleted(g) => {
                self.groups.remove(&g.id);
            }
        }
    }

    /// Would this change be accepted now?
    pub fn validate(&self, change: &ConfigChange) -> Result<(), Rejected> {
        match change {
            ConfigChange::TServerCreated(t) => {
                check_tserver(t)?;
                if self.tservers.contains_key(&t.id) {
                    return Err(Rejected::TServerExists(t.id));
                }
            }
            ConfigChange::TServerUpdated(t) => {
                check_tserver(t)?;
                self.tserver(t.id)?;
            }
            ConfigChange::TServerDeleted(t) => {
                self.tserver(t.id)?;
                let dns = self.dns_of(t.id).count();
                if dns > 0 {
                    return Err(Rejected::TServerHasDns { id: t.id, dns });
                }
                let groups = self.groups.values().filter(|g| g.tserver == t.id).count();
                if groups > 0 {
                    return Err(Rejected::TServerHasGroups { id: t.id, groups });
                }
            }
            ConfigChange::DnCreated(d) => {
                check_dn(&d.number)?;
                self.tserver(d.tserver)?;
                if self.dns.contains_key(&(d.tserver, d.number.clone())) {
                    return Err(Rejected::DnExists { tserver: d.tserver, number: d.number.clone() });
                }
                if let Some((tserver, number)) = self.by_dbid.get(&d.dbid) {
                    return Err(Rejected::DuplicateDbid { dbid: d.dbid, tserver: *tserver, number: number.clone() });
                }
            }
            ConfigChange::DnUpdated(d) => {
                self.tserver(d.tserver)?;
                let current = self.dn(d.tserver, &d.number)?;
                if current.dbid != d.dbid {
                    return Err(Rejected::DbidMismatch {
                        tserver: d.tserver,
                        number: d.number.clone(),
                        actual: current.dbid,
                        given: d.dbid,
                    });
                }
            }
            ConfigChange::DnDeleted(DnRef { dbid, tserver, number }) => {
                let current = self.dn(*tserver, number)?;
                if current.dbid != *dbid {
                    return Err(Rejected::DbidMismatch { tserver: *tserver, number: number.clone(), actual: current.dbid, given: *dbid });
                }
            }
            ConfigChange::GroupCreated(g) => {
                self.check_group(g, &[])?;
                if let Some(existing) = self.groups.get(&g.id) {
                    return Err(Rejected::GroupExists { id: g.id, tserver: existing.tserver });
                }
            }
            ConfigChange::GroupUpdated(g) => {
                let listed = &self.group(g.id, g.tserver)?.members;
                self.check_group(g, listed)?;
            }
            ConfigChange::GroupDeleted(GroupRef { id, tserver }) => {
                self.group(*id, *tserver)?;
            }
        }
        Ok(())
    }

    /// A group of a known T-Server with a name and members that are well-formed, given
    /// once each; a DN group's new members are DNs of its T-Server (a DN deleted after it
    /// was listed may stay listed, and counts nothing).
    fn check_group(&self, g: &Group, listed: &[String]) -> Result<(), Rejected> {
        if g.id <= 0 {
            return Err(Rejected::Invalid(format!("group id must be positive, got {}", g.id)));
        }
        if g.name.trim().is_empty() || g.name.len() > 64 {
            return Err(Rejected::Invalid("a group name is 1-64 characters".into()));
        }
        self.tserver(g.tserver)?;
        let mut seen = std::collections::BTreeSet::new();
        for m in &g.members {
            if !seen.insert(m) {
                return Err(Rejected::Invalid(format!("member {m:?} is listed twice")));
            }
            match g.kind {
                GroupKind::Dn if !listed.contains(m) => {
                    self.dn(g.tserver, m)?;
                }
                GroupKind::Dn => {}
                GroupKind::Agent => {
                    if m.is_empty() || m.len() > 64 || m.chars().any(char::is_control) {
                        return Err(Rejected::Invalid(format!("agent id {m:?} must be 1-64 printable characters")));
                    }
                }
            }
        }
        Ok(())
    }

    /// A group by id, on the given T-Server.
    pub fn group(&self, id: i32, tserver: i32) -> Result<&Group, Rejected> {
        self.groups.get(&id).filter(|g| g.tserver == tserver).ok_or(Rejected::UnknownGroup { id, tserver })
    }

    /// Validate and fold: what a producer does before appending.
    pub fn accept(&mut self, change: &ConfigChange) -> Result<(), Rejected> {
        self.validate(change)?;
        self.apply_unchecked(change);
        Ok(())
    }

    /// A T-Server by id.
    /// The DN with this DBID, if any.
    pub fn dn_by_dbid(&self, dbid: i32) -> Option<&Dn> {
        self.by_dbid.get(&dbid).and_then(|key| self.dns.get(key))
    }

    pub fn tserver(&self, id: i32) -> Result<&TServer, Rejected> {
        self.tservers.get(&id).ok_or(Rejected::UnknownTServer(id))
    }

    /// A DN by T-Server and number.
    pub fn dn(&self, tserver: i32, number: &str) -> Result<&Dn, Rejected> {
        self.dns.get(&(tserver, number.to_string())).ok_or_else(|| Rejected::UnknownDn { tserver, number: number.to_string() })
    }

    /// The DNs of a T-Server, by number.
    pub fn dns_of(&self, tserver: i32) -> impl Iterator<Item = &Dn> {
        self.dns.range((tserver, String::new())..).take_while(move |((t, _), _)| *t == tserver).map(|(_, d)| d)
    }
}

fn check_tserver(t: &TServer) -> Result<(), Rejected> {
    if t.id <= 0 {
        return Err(Rejected::Invalid(format!("T-Server id must be positive, got {}", t.id)));
    }
    if t.host.trim().is_empty() {
        return Err(Rejected::Invalid("T-Server host must not be empty".into()));
    }
    if !(1..=65535).contains(&t.port) {
        return Err(Rejected::Invalid(format!("T-Server port must be 1..65535, got {}", t.port)));
    }
    match (t.kind, &t.rpc) {
        (ServerKind::Cti, Some(_)) => return Err(Rejected::Invalid("only a kamailio server has an RPC URL".into())),
        (ServerKind::Kamailio, Some(url)) if !url.starts_with("http://") || url.len() <= "http://".len() => {
            return Err(Rejected::Invalid(format!("the RPC URL must be http://host:port/path, got {url:?}")));
        }
        _ => {}
    }
    Ok(())
}

fn check_dn(number: &str) -> Result<(), Rejected> {
    if number.is_empty() || number.len() > 32 || !number.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(Rejected::Invalid(format!("DN number {number:?} must be 1-32 letters, digits, '-' or '_'")));
    }
    Ok(())
}

/// One line of an import file: the same operations as the `netwatch config` commands.
#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum ImportLine {
    CreateTserver {
        id: i32,
        name: String,
        host: String,
        port: i32,
        /// `cti` (default) or `kamailio`.
        #[serde(default)]
        kind: Option<String>,
        /// Kamailio's JSON-RPC URL.
        #[serde(default)]
        rpc: Option<String>,
    },
    UpdateTserver {
        id: i32,
        name: Option<String>,
        host: Option<String>,
        port: Option<i32>,
        #[serde(default)]
        rpc: Option<String>,
    },
    DeleteTserver {
        id: i32,
    },
    CreateDn {
        tserver: i32,
        dbid: i32,
        number: String,
        #[serde(default = "default_dn_type")]
        dn_type: String,
    },
    UpdateDn {
        tserver: i32,
        number: String,
        dn_type: String,
    },
    DeleteDn {
        tserver: i32,
        number: String,
    },
    CreateGroup {
        tserver: i32,
        id: i32,
        name: String,
        /// `agent` or `dn`.
        kind: String,
        #[serde(default)]
        members: Vec<String>,
    },
    UpdateGroup {
        tserver: i32,
        id: i32,
        name: Option<String>,
        /// The members from now on (replaces the list).
        members: Option<Vec<String>>,
    },
    DeleteGroup {
        tserver: i32,
        id: i32,
    },
}

fn default_dn_type() -> String {
    "extension".into()
}

impl ImportLine {
    /// Turn the line into a change, filling updates from the current state.
    pub fn to_change(&self, state: &ConfigState) -> Result<ConfigChange, Rejected> {
        Ok(match self {
            ImportLine::CreateTserver { id, name, host, port, kind, rpc } => {
                let kind = kind.as_deref().map(str::parse).transpose().map_err(Rejected::Invalid)?.unwrap_or_default();
                ConfigChange::TServerCreated(TServer { kind, rpc: rpc.clone(), ..TServer::cti(*id, name.clone(), host.clone(), *port) })
            }
            ImportLine::UpdateTserver { id, name, host, port, rpc } => {
                let mut t = state.tserver(*id)?.clone();
                if let Some(n) = name {
                    t.name = n.clone();
                }
                if let Some(h) = host {
                    t.host = h.clone();
                }
                if let Some(p) = port {
                    t.port = *p;
                }
                if let Some(r) = rpc {
                    t.rpc = Some(r.clone());
                }
                ConfigChange::TServerUpdated(t)
            }
            ImportLine::DeleteTserver { id } => ConfigChange::TServerDeleted(netwatch_schemas::config::TServerRef { id: *id }),
            ImportLine::CreateDn { tserver, dbid, number, dn_type } => ConfigChange::DnCreated(Dn {
                dbid: *dbid,
                tserver: *tserver,
                number: number.clone(),
                dn_type: dn_type.parse().map_err(Rejected::Invalid)?,
            }),
            ImportLine::UpdateDn { tserver, number, dn_type } => {
                let mut d = state.dn(*tserver, number)?.clone();
                d.dn_type = dn_type.parse().map_err(Rejected::Invalid)?;
                ConfigChange::DnUpdated(d)
            }
            ImportLine::DeleteDn { tserver, number } => ConfigChange::DnDeleted(state.dn(*tserver, number)?.identity()),
            ImportLine::CreateGroup { tserver, id, name, kind, members } => ConfigChange::GroupCreated(Group {
                id: *id,
                tserver: *tserver,
                name: name.clone(),
                kind: kind.parse().map_err(Rejected::Invalid)?,
                members: members.clone(),
            }),
            ImportLine::UpdateGroup { tserver, id, name, members } => {
                let mut g = state.group(*id, *tserver)?.clone();
                if let Some(n) = name {
                    g.name = n.clone();
                }
                if let Some(m) = members {
                    g.members = m.clone();
                }
                ConfigChange::GroupUpdated(g)
            }
            ImportLine::DeleteGroup { tserver, id } => ConfigChange::GroupDeleted(GroupRef { id: *id, tserver: *tserver }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netwatch_schemas::config::{DnType, TServerRef};

    fn ts(id: i32) -> TServer {
        TServer::cti(id, format!("TS{id}"), "127.0.0.1", 7000 + id)
    }

    fn dn(tserver: i32, dbid: i32, number: &str) -> Dn {
        Dn { dbid, tserver, number: number.into(), dn_type: DnType::Extension }
    }

    #[test]
    fn a_dn_of_an_unknown_tserver_is_refused() {
        let state = ConfigState::default();
        assert_eq!(state.validate(&ConfigChange::DnCreated(dn(9, 1, "5001"))), Err(Rejected::UnknownTServer(9)));
    }

    #[test]
    fn a_duplicate_dbid_is_refused_even_on_another_tserver() {
        let mut state = ConfigState::default();
        state.accept(&ConfigChange::TServerCreated(ts(1))).unwrap();
        state.accept(&ConfigChange::TServerCreated(ts(2))).unwrap();
        state.accept(&ConfigChange::DnCreated(dn(1, 100, "5001"))).unwrap();
        let err = state.accept(&ConfigChange::DnCreated(dn(2, 100, "6001"))).unwrap_err();
        assert_eq!(err, Rejected::DuplicateDbid { dbid: 100, tserver: 1, number: "5001".into() });
        assert_eq!(err.to_string(), "DBID 100 is already used by DN 5001 on T-Server 1; nothing was appended");
        assert_eq!(state.dns.len(), 1);
    }

    #[test]
    fn a_deleted_dns_dbid_is_free_again_and_a_snapshot_rebuilds_the_index() {
        let mut state = ConfigState::default();
        state.accept(&ConfigChange::TServerCreated(ts(1))).unwrap();
        state.accept(&ConfigChange::DnCreated(dn(1, 7, "5001"))).unwrap();
        state.accept(&ConfigChange::DnUpdated(dn(1, 7, "5001"))).unwrap();
        let rebuilt = ConfigState::from_parts(state.tservers.values().cloned(), state.dns.values().cloned());
        assert_eq!(rebuilt, state);
        let refused = Err(Rejected::DuplicateDbid { dbid: 7, tserver: 1, number: "5001".into() });
        assert_eq!(rebuilt.validate(&ConfigChange::DnCreated(dn(1, 7, "5002"))), refused);
        state.accept(&ConfigChange::DnDeleted(DnRef { dbid: 7, tserver: 1, number: "5001".into() })).unwrap();
        state.accept(&ConfigChange::DnCreated(dn(1, 7, "5002"))).unwrap();
    }

    #[test]
    fn update_and_delete_of_missing_objects_are_refused() {
        let mut state = ConfigState::default();
        assert_eq!(state.validate(&ConfigChange::TServerUpdated(ts(1))), Err(Rejected::UnknownTServer(1)));
        assert_eq!(state.validate(&ConfigChange::TServerDeleted(TServerRef { id: 1 })), Err(Rejected::UnknownTServer(1)));
        state.accept(&ConfigChange::TServerCreated(ts(1))).unwrap();
        let missing = DnRef { dbid: 5, tserver: 1, number: "5001".into() };
        assert!(matches!(state.validate(&ConfigChange::DnDeleted(missing)), Err(Rejected::UnknownDn { .. })));
    }

    #[test]
    fn a_tserver_with_dns_cannot_be_deleted_until_they_are() {
        let mut state = ConfigState::default();
        state.accept(&ConfigChange::TServerCreated(ts(1))).unwrap();
        state.accept(&ConfigChange::DnCreated(dn(1, 1, "5001"))).unwrap();
        assert_eq!(state.validate(&ConfigChange::TServerDeleted(TServerRef { id: 1 })), Err(Rejected::TServerHasDns { id: 1, dns: 1 }));
        state.accept(&ConfigChange::DnDeleted(DnRef { dbid: 1, tserver: 1, number: "5001".into() })).unwrap();
        state.accept(&ConfigChange::TServerDeleted(TServerRef { id: 1 })).unwrap();
        assert_eq!(state, ConfigState::default());
    }

    fn group(id: i32, tserver: i32, kind: GroupKind, members: &[&str]) -> Group {
        Group { id, tserver, name: format!("G{id}"), kind, members: members.iter().map(|m| m.to_string()).collect() }
    }

    #[test]
    fn groups_are_checked_against_their_tserver_and_block_its_deletion() {
        let mut state = ConfigState::default();
        let sales = group(10, 1, GroupKind::Dn, &["5001", "5002"]);
        assert_eq!(state.validate(&ConfigChange::GroupCreated(sales.clone())), Err(Rejected::UnknownTServer(1)));
        state.accept(&ConfigChange::TServerCreated(ts(1))).unwrap();
        state.accept(&ConfigChange::TServerCreated(ts(2))).unwrap();
        state.accept(&ConfigChange::DnCreated(dn(1, 1, "5001"))).unwrap();
        // A DN group's members are DNs of its T-Server.
        let err = state.validate(&ConfigChange::GroupCreated(sales.clone())).unwrap_err();
        assert_eq!(err.to_string(), "T-Server 1 has no DN 5002; nothing was appended");
        state.accept(&ConfigChange::DnCreated(dn(1, 2, "5002"))).unwrap();
        state.accept(&ConfigChange::GroupCreated(sales.clone())).unwrap();
        // Ids are unique across T-Servers; members are listed once; agents are any ids.
        let err = state.validate(&ConfigChange::GroupCreated(group(10, 2, GroupKind::Agent, &["a1"]))).unwrap_err();
        assert_eq!(err, Rejected::GroupExists { id: 10, tserver: 1 });
        let twice = group(11, 1, GroupKind::Agent, &["a1", "a1"]);
        assert!(matches!(state.validate(&ConfigChange::GroupCreated(twice)), Err(Rejected::Invalid(r)) if r.contains("twice")));
        state.accept(&ConfigChange::GroupCreated(group(11, 2, GroupKind::Agent, &["agent-7", "agent 8"]))).unwrap();
        // An update or deletion names the group's own T-Server.
        assert_eq!(
            state.validate(&ConfigChange::GroupDeleted(GroupRef { id: 10, tserver: 2 })),
            Err(Rejected::UnknownGroup { id: 10, tserver: 2 })
        );
        state.accept(&ConfigChange::GroupUpdated(group(10, 1, GroupKind::Dn, &["5002"]))).unwrap();
        assert_eq!(state.groups[&10].members, ["5002"]);
        // A T-Server keeps its groups until they are deleted.
        state.accept(&ConfigChange::DnDeleted(DnRef { dbid: 1, tserver: 1, number: "5001".into() })).unwrap();
        state.accept(&ConfigChange::DnDeleted(DnRef { dbid: 2, tserver: 1, number: "5002".into() })).unwrap();
        // The deleted DN may stay listed when the group is renamed, not be added again.
        state.accept(&ConfigChange::GroupUpdated(Group { name: "Sales EU".into(), ..group(10, 1, GroupKind::Dn, &["5002"]) })).unwrap();
        let readded = ConfigChange::GroupUpdated(group(10, 1, GroupKind::Dn, &["5002", "5001"]));
        assert_eq!(state.validate(&readded), Err(Rejected::UnknownDn { tserver: 1, number: "5001".into() }));
        let err = state.validate(&ConfigChange::TServerDeleted(TServerRef { id: 1 })).unwrap_err();
        assert_eq!(err.to_string(), "T-Server 1 still has 1 groups; delete them first; nothing was appended");
        state.accept(&ConfigChange::GroupDeleted(GroupRef { id: 10, tserver: 1 })).unwrap();
        state.accept(&ConfigChange::TServerDeleted(TServerRef { id: 1 })).unwrap();
        assert_eq!(state.groups.keys().collect::<Vec<_>>(), [&11]);
    }

    #[test]
    fn group_import_lines_become_changes() {
        let mut state = ConfigState::default();
        state.accept(&ConfigChange::TServerCreated(ts(1))).unwrap();
        let line: ImportLine =
            serde_json::from_str(r#"{"op":"create_group","tserver":1,"id":5,"name":"Support","kind":"agent","members":["a1"]}"#).unwrap();
        let created = line.to_change(&state).unwrap();
        assert_eq!(created, ConfigChange::GroupCreated(Group { name: "Support".into(), ..group(5, 1, GroupKind::Agent, &["a1"]) }));
        state.accept(&created).unwrap();
        let line: ImportLine = serde_json::from_str(r#"{"op":"update_group","tserver":1,"id":5,"members":["a1","a2"]}"#).unwrap();
        assert_eq!(
            line.to_change(&state).unwrap(),
            ConfigChange::GroupUpdated(Group { name: "Support".into(), ..group(5, 1, GroupKind::Agent, &["a1", "a2"]) })
        );
        let bad: ImportLine = serde_json::from_str(r#"{"op":"create_group","tserver":1,"id":6,"name":"X","kind":"queue"}"#).unwrap();
        assert_eq!(bad.to_change(&state), Err(Rejected::Invalid("unknown group kind \"queue\" (agent or dn)".into())));
    }

    #[test]
    fn dns_of_lists_only_that_tserver() {
        let mut state = ConfigState::default();
        for t in 1..=3 {
            state.accept(&ConfigChange::TServerCreated(ts(t))).unwrap();
            for n in 0..2 {
                state.accept(&ConfigChange::DnCreated(dn(t, t * 10 + n, &format!("{t}00{n}")))).unwrap();
            }
        }
        let numbers: Vec<_> = state.dns_of(2).map(|d| d.number.as_str()).collect();
        assert_eq!(numbers, ["2000", "2001"]);
    }

    #[test]
    fn import_lines_parse_and_bad_ones_are_errors() {
        let line: ImportLine = serde_json::from_str(r#"{"op":"create_dn","tserver":1,"dbid":7,"number":"5001"}"#).unwrap();
        let mut state = ConfigState::default();
        state.accept(&ConfigChange::TServerCreated(ts(1))).unwrap();
        assert_eq!(line.to_change(&state).unwrap(), ConfigChange::DnCreated(dn(1, 7, "5001")));
        assert!(serde_json::from_str::<ImportLine>(r#"{"op":"create_dn","tserver":1}"#).is_err());
        assert!(serde_json::from_str::<ImportLine>(r#"{"op":"explode"}"#).is_err());
    }
}
