//! Resynchronisation with Kamailio's JSON-RPC `dlg.list` and `ul.dump`
//! (`docs/sip-draft.md`, "JSON-RPC").
//!
//! After (re)connecting evapi, the runner reads both lists and calls
//! [`Model::resync`](super::model::Model::resync), which uses [`reconcile`]: the pure
//! difference between what the model holds and what Kamailio has, as outputs.

use std::collections::{BTreeMap, BTreeSet};

use netwatch_schemas::calls::TEventKind;
use serde::Deserialize;

use super::event::Party;
use super::model::{connid, parties_from, CallView, Outcome, Output, Phase, Release, ReleasedBy, View};

/// `dlg.state` of an ended dialog, kept a few seconds by the tm wait timer: ignored.
pub const DLG_STATE_DELETED: u8 = 5;

/// One entry of `dlg.list`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Dialog {
    pub h_entry: u64,
    pub h_id: u64,
    #[serde(rename = "call-id")]
    pub call_id: String,
    #[serde(default)]
    pub from_uri: Option<String>,
    #[serde(default)]
    pub to_uri: Option<String>,
    /// 1 INVITE forwarded, 2 early (18x), 3 answered without ACK yet, 4 confirmed, 5 ended.
    pub state: u8,
    /// Answer time, unix seconds (0 before).
    #[serde(default)]
    pub start_ts: u64,
    /// INVITE time, unix seconds.
    #[serde(default)]
    pub init_ts: u64,
    pub caller: DialogParty,
    pub callee: DialogParty,
    /// Variables set by the config, one single-key object each.
    #[serde(default)]
    pub variables: Vec<BTreeMap<String, serde_json::Value>>,
}

/// `caller` / `callee` of a dialog.
///
/// Every field of the callee is `null` until it has replied with a tag (seen on a
/// dialog ended by a 486 before any 18x).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct DialogParty {
    /// From tag of the caller (= `from_tag` of the events), To tag of the callee.
    #[serde(default)]
    pub tag: Option<String>,
    #[serde(default)]
    pub contact: Option<String>,
}

/// `ul.dump` result.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct UlDump {
    #[serde(rename = "Domains", default)]
    pub domains: Vec<DomainEntry>,
}

/// `{"Domain": {...}}`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct DomainEntry {
    #[serde(rename = "Domain")]
    pub domain: Domain,
}

/// A usrloc table (`location`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Domain {
    #[serde(rename = "Domain")]
    pub name: String,
    #[serde(rename = "AoRs", default)]
    pub aors: Vec<AorEntry>,
}

/// `{"Info": {...}}`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct AorEntry {
    #[serde(rename = "Info")]
    pub info: Aor,
}

/// An address of record (the DN) and its bindings.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Aor {
    #[serde(rename = "AoR")]
    pub aor: String,
    #[serde(rename = "Contacts", default)]
    pub contacts: Vec<ContactEntry>,
}

/// `{"Contact": {...}}`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ContactEntry {
    #[serde(rename = "Contact")]
    pub contact: Contact,
}

/// One binding.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Contact {
    #[serde(rename = "Address")]
    pub address: String,
    #[serde(rename = "Expires")]
    pub expires: Expires,
    #[serde(rename = "Call-ID", default)]
    pub call_id: Option<String>,
    #[serde(rename = "User-Agent", default)]
    pub user_agent: Option<String>,
}

/// `Expires` of a binding: seconds left, or a word.
///
/// The draft shows seconds only; usrloc's RPC code (`ul_rpc.c`) also prints
/// `"permanent"` (no expiry), `"expired"` and `"deleted"`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Expires {
    Seconds(i64),
    Word(String),
}

impl Expires {
    /// The binding still routes calls.
    pub fn is_active(&self) -> bool {
        match self {
            Expires::Seconds(left) => *left > 0,
            Expires::Word(word) => word == "permanent",
        }
    }
}

impl Dialog {
    /// A variable set by the config (`caller`, `callee`, `hold_caller`, `hold_callee`).
    pub fn variable(&self, name: &str) -> Option<&str> {
        self.variables.iter().find_map(|v| v.get(name)).and_then(|v| v.as_str())
    }

    /// Caller DN: the `caller` variable, else the user of `from_uri`.
    pub fn caller_dn(&self) -> String {
        self.variable("caller").map(str::to_string).or_else(|| self.from_uri.as_deref().and_then(uri_user)).unwrap_or_default()
    }

    /// Callee DN as dialled: the `callee` variable, else the user of `to_uri`.
    pub fn callee_dn(&self) -> String {
        self.variable("callee").map(str::to_string).or_else(|| self.to_uri.as_deref().and_then(uri_user)).unwrap_or_default()
    }
}

impl UlDump {
    /// AoRs with at least one active binding → their contact addresses.
    pub fn bindings(&self) -> BTreeMap<String, BTreeSet<String>> {
        let mut bindings: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for aor in self.domains.iter().flat_map(|d| &d.domain.aors) {
            let active: BTreeSet<String> =
                aor.info.contacts.iter().filter(|c| c.contact.expires.is_active()).map(|c| c.contact.address.clone()).collect();
            if !active.is_empty() {
                bindings.entry(aor.info.aor.clone()).or_default().extend(active);
            }
        }
        bindings
    }
}

/// User part of `sip:user@host...`.
fn uri_user(uri: &str) -> Option<String> {
    let rest = uri.strip_prefix("sip:").or_else(|| uri.strip_prefix("sips:"))?;
    let (user, _) = rest.split_once('@')?;
    Some(user.to_string())
}

fn rank(phase: Phase) -> u8 {
    match phase {
        Phase::Dialing => 0,
        Phase::Ringing => 1,
        Phase::Established => 2,
    }
}

/// The view that matches Kamailio, and the outputs that lead from `view` to it.
///
/// - Calls the model holds that Kamailio no longer lists (states 1–4) ended while no
///   event reached the model: **Released with [`Outcome::Lost`], by
///   [`ReleasedBy::Server`]**, at the caller and, if it was alerted, the callee —
///   neither the real outcome nor who hung up is known.
/// - Calls Kamailio lists that the model lacks start with Dialing at the caller, then
///   reach their state: Ringing at the callee (state 2), Established at both (3 and 4),
///   Held at each party whose `hold_<party>` variable is `"1"`. State 1 is Dialing only.
/// - Calls both know move forward only (Ringing → Established) and take Kamailio's hold
///   flags (Held / Retrieved at the party whose flag changed).
/// - Configured DNs that gained their first binding are InService, those that lost their
///   last one OutOfService.
///
/// Outputs carry `now_ms`. Order: lost calls, registrations, then Kamailio's calls by
/// connid.
pub fn reconcile(view: &View, filter: &BTreeSet<String>, dialogs: &[Dialog], ul: &UlDump, now_ms: u64) -> (View, Vec<Output>) {
    let mut out = Vec::new();
    let mut calls = BTreeMap::new();
    for dialog in dialogs.iter().filter(|d| (1..DLG_STATE_DELETED).contains(&d.state)) {
        // every dialog is created from an INVITE with a From tag; without one it cannot be
        // matched to events
        let Some(from_tag) = dialog.caller.tag.as_deref() else { continue };
        let key = connid(&dialog.call_id, from_tag);
        let phase = match dialog.state {
            1 => Phase::Dialing,
            2 => Phase::Ringing,
            _ => Phase::Established,
        };
        let answered = phase == Phase::Established;
        let kamailio = CallView {
            call_id: dialog.call_id.clone(),
            from_tag: from_tag.to_string(),
            caller: dialog.caller_dn(),
            callee: dialog.callee_dn(),
            phase,
            callee_alerted: phase != Phase::Dialing,
            held_by_caller: answered && dialog.variable("hold_caller") == Some("1"),
            held_by_callee: answered && dialog.variable("hold_callee") == Some("1"),
        };
        calls.insert(key, kamailio);
    }

    for (key, call) in &view.calls {
        if calls.contains_key(key) {
            continue;
        }
        let release = Some(Release { outcome: Outcome::Lost, by: ReleasedBy::Server });
        for party in parties_from(Party::Caller) {
            if party == Party::Caller || call.callee_alerted {
                out.extend(call.output(filter, party, TEventKind::Released, now_ms, release));
            }
        }
    }

    let bindings: BTreeMap<String, BTreeSet<String>> = ul.bindings().into_iter().filter(|(dn, _)| filter.contains(dn)).collect();
    for dn in filter {
        match (view.registered.contains_key(dn), bindings.contains_key(dn)) {
            (true, false) => out.push(Output::OutOfService { dn: dn.clone(), time_ms: now_ms }),
            (false, true) => out.push(Output::InService { dn: dn.clone(), time_ms: now_ms }),
            _ => {}
        }
    }

    for (key, kamailio) in calls.iter_mut() {
        let known = view.calls.get(key);
        let mut current = match known {
            Some(call) => call.clone(),
            None => {
                let mut fresh = kamailio.clone();
                fresh.phase = Phase::Dialing;
                fresh.callee_alerted = false;
                fresh.held_by_caller = false;
                fresh.held_by_callee = false;
                out.extend(fresh.output(filter, Party::Caller, TEventKind::Dialing, now_ms, None));
                fresh
            }
        };
        if rank(kamailio.phase) > rank(current.phase) {
            if kamailio.phase == Phase::Ringing {
                out.extend(current.output(filter, Party::Callee, TEventKind::Ringing, now_ms, None));
            } else {
                for party in [Party::Caller, Party::Callee] {
                    out.extend(current.output(filter, party, TEventKind::Established, now_ms, None));
                }
            }
            current.phase = kamailio.phase;
            current.callee_alerted = true;
        }
        if current.phase == Phase::Established {
            for (party, was, is) in [
                (Party::Caller, current.held_by_caller, kamailio.held_by_caller),
                (Party::Callee, current.held_by_callee, kamailio.held_by_callee),
            ] {
                if was != is {
                    let kind = if is { TEventKind::Held } else { TEventKind::Retrieved };
                    out.extend(current.output(filter, party, kind, now_ms, None));
                }
            }
            current.held_by_caller = kamailio.held_by_caller;
            current.held_by_callee = kamailio.held_by_callee;
        }
        *kamailio = current;
    }

    (View { calls, registered: bindings }, out)
}

/// Real `dlg.list` and `ul.dump` results from `docs/sip-draft.md`.
#[cfg(test)]
pub(crate) mod samples {
    /// `dlg.list` during the hold of case (a), the whole reply.
    pub const DLG_LIST_HOLD: &str = r#"{"jsonrpc":"2.0","result":[{"h_entry":356,"h_id":3058,"ref":2,"call-id":"1-6035@127.0.0.1",
 "from_uri":"sip:5001@127.0.0.1:5070","to_uri":"sip:5002@127.0.0.1:5070","state":4,
 "start_ts":1796283421,"init_ts":1796283419,"end_ts":0,"duration":4,"timeout":1796326625,
 "lifetime":43200,"dflags":643,"sflags":0,"iflags":0,
 "caller":{"tag":"6035SIPpTag001","contact":"sip:5001@127.0.0.1:5091","cseq":"2","route_set":"","socket":"udp:127.0.0.1:5070"},
 "callee":{"tag":"6030SIPpTag011","contact":"sip:127.0.0.1:5092;transport=UDP","cseq":"0","route_set":"","socket":"udp:127.0.0.1:5070"},
 "profiles":[],
 "variables":[{"hold_callee":"0"},{"hold_caller":"1"},{"callee":"5002"},{"caller":"5001"}]}],"id":1}"#;

    /// `ul.dump` after the callee registered, the whole reply.
    pub const UL_DUMP_ONE: &str = r#"{"jsonrpc":"2.0","result":{"Domains":[{"Domain":{"Domain":"location","Size":1024,
 "AoRs":[{"Info":{"AoR":"5002","HashID":866010642,"Contacts":[{"Contact":{
   "Address":"sip:5002@127.0.0.1:5092","Expires":3537,"Q":-1,"Call-ID":"1-4891@127.0.0.1","CSeq":1,
   "User-Agent":"netwatch-sipp-register","Received":"[not set]","Path":"[not set]","State":"CS_NEW",
   "Flags":0,"CFlags":0,"Socket":"udp:127.0.0.1:5070","Methods":4294967295,"Ruid":"uloc-6b111bf2-12dd-1",
   "Instance":"[not set]","Reg-Id":0,"Server-Id":0,"Tcpconn-Id":-1,"Keepalive":0,
   "Last-Keepalive":1796283378,"KA-Roundtrip":0,"Last-Modified":1796283378}}]}}],
 "Stats":{"Records":1,"Max-Slots":1}}}]},"id":1}"#;

    /// `ul.dump` with no registration.
    pub const UL_DUMP_EMPTY: &str = r#"{"jsonrpc":"2.0","result":{"Domains":[{"Domain":{"Domain":"location","Size":1024,"AoRs":[],"Stats":{"Records":0,"Max-Slots":0}}}]},"id":1}"#;
}

#[cfg(test)]
mod tests {
    use super::super::event::samples::{event, HOLD_CALL};
    use super::super::model::{CallEvent, Model};
    use super::samples::*;
    use super::*;
    use netwatch_schemas::calls::CallType;

    fn result<T: serde::de::DeserializeOwned>(reply: &str) -> T {
        let value: serde_json::Value = serde_json::from_str(reply).unwrap();
        serde_json::from_value(value["result"].clone()).unwrap()
    }

    fn filter() -> BTreeSet<String> {
        ["5001", "5002"].iter().map(|s| s.to_string()).collect()
    }

    fn kinds(out: &[Output]) -> Vec<(TEventKind, String)> {
        out.iter()
            .map(|o| match o {
                Output::Call(CallEvent { kind, dn, .. }) => (*kind, dn.clone()),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn parses_the_real_replies() {
        let dialogs: Vec<Dialog> = result(DLG_LIST_HOLD);
        assert_eq!(dialogs.len(), 1);
        let d = &dialogs[0];
        assert_eq!((d.h_entry, d.h_id, d.state), (356, 3058, 4));
        assert_eq!((d.call_id.as_str(), d.caller.tag.as_deref()), ("1-6035@127.0.0.1", Some("6035SIPpTag001")));
        assert_eq!((d.caller_dn().as_str(), d.callee_dn().as_str()), ("5001", "5002"));
        assert_eq!((d.variable("hold_caller"), d.variable("hold_callee")), (Some("1"), Some("0")));

        let ul: UlDump = result(UL_DUMP_ONE);
        assert_eq!(ul.domains[0].domain.name, "location");
        assert_eq!(ul.bindings(), BTreeMap::from([("5002".to_string(), BTreeSet::from(["sip:5002@127.0.0.1:5092".to_string()]))]));
        let empty: UlDump = result(UL_DUMP_EMPTY);
        assert!(empty.bindings().is_empty());
    }

    #[test]
    fn ended_dialog_with_a_null_callee_parses_and_is_ignored() {
        // captured from this Kamailio after a 486 (uac_busy.xml), whitespace compacted
        let reply = r#"{"jsonrpc":"2.0","result":[{"h_entry":1198,"h_id":12274,"ref":1,"call-id":"1-14250@127.0.0.1",
 "from_uri":"sip:5001@127.0.0.1:5370","to_uri":"sip:5002@127.0.0.1:5370","state":5,"start_ts":0,"init_ts":1796294571,
 "end_ts":1796294571,"duration":1796294571,"timeout":0,"lifetime":43200,"dflags":640,"sflags":0,"iflags":0,
 "caller":{"tag":"14250SIPpTag001","contact":"sip:5001@127.0.0.1:5391","cseq":"1","route_set":"","socket":"udp:127.0.0.1:5370"},
 "callee":{"tag":null,"contact":null,"cseq":null,"route_set":null,"socket":null},"profiles":[],"variables":[]}],"id":1}"#;
        let dialogs: Vec<Dialog> = result(reply);
        assert_eq!((dialogs[0].state, dialogs[0].callee.tag.as_deref()), (5, None));
        let (view, out) = reconcile(&View::default(), &filter(), &dialogs, &UlDump::default(), 1);
        assert_eq!((view, out), (View::default(), vec![]), "state 5 is ignored");
        // the same in state 1 (INVITE forwarded, no reply): a call, DNs from the URIs
        let trying = reply.replace("\"state\":5", "\"state\":1");
        let (view, out) = reconcile(&View::default(), &filter(), &result::<Vec<Dialog>>(&trying), &UlDump::default(), 1);
        assert_eq!(kinds(&out), vec![(TEventKind::Dialing, "5001".into())]);
        assert_eq!(view.calls["1-14250@127.0.0.1;14250SIPpTag001"].callee, "5002");
    }

    #[test]
    fn dn_falls_back_to_the_uris() {
        let mut d: Vec<Dialog> = result(DLG_LIST_HOLD);
        d[0].variables.clear();
        assert_eq!((d[0].caller_dn().as_str(), d[0].callee_dn().as_str()), ("5001", "5002"));
    }

    #[test]
    fn expired_and_permanent_bindings() {
        for (expires, active) in [("3537", true), ("0", false), ("\"permanent\"", true), ("\"expired\"", false), ("\"deleted\"", false)] {
            let reply = UL_DUMP_ONE.replace("\"Expires\":3537", &format!("\"Expires\":{expires}"));
            let ul: UlDump = result(&reply);
            assert_eq!(!ul.bindings().is_empty(), active, "Expires {expires}");
        }
    }

    #[test]
    fn unknown_held_call_is_rebuilt() {
        // the model connects during the hold of case (a): nothing known yet
        let dialogs: Vec<Dialog> = result(DLG_LIST_HOLD);
        let ul: UlDump = result(UL_DUMP_ONE);
        let (view, out) = reconcile(&View::default(), &filter(), &dialogs, &ul, 1_796_283_425_000);
        assert_eq!(out[0], Output::InService { dn: "5002".into(), time_ms: 1_796_283_425_000 });
        assert_eq!(
            kinds(&out[1..]),
            vec![
                (TEventKind::Dialing, "5001".into()),
                (TEventKind::Established, "5001".into()),
                (TEventKind::Established, "5002".into()),
                // hold_caller = "1": the caller holds
                (TEventKind::Held, "5001".into()),
            ]
        );
        let Output::Call(held) = &out[4] else { panic!() };
        assert_eq!(
            (held.connid.as_str(), held.other_dn.as_str(), held.call_type),
            ("1-6035@127.0.0.1;6035SIPpTag001", "5002", CallType::Internal)
        );
        let call = &view.calls["1-6035@127.0.0.1;6035SIPpTag001"];
        assert_eq!((call.phase, call.held_by_caller, call.held_by_callee), (Phase::Established, true, false));

        // the same again changes nothing
        let (again, out) = reconcile(&view, &filter(), &dialogs, &ul, 1_796_283_426_000);
        assert_eq!((again, out), (view, vec![]));
    }

    #[test]
    fn model_that_saw_the_hold_matches_dlg_list() {
        let mut model = Model::new(filter());
        let mut out = Vec::new();
        for json in &HOLD_CALL[..4] {
            model.on_event(&event(json), &mut out);
        }
        let dialogs: Vec<Dialog> = result(DLG_LIST_HOLD);
        let ul: UlDump = result(UL_DUMP_EMPTY);
        let mut resynced = Vec::new();
        model.resync(&dialogs, &ul, 1, &mut resynced);
        assert_eq!(resynced, vec![], "events and dlg.list agree");

        // the retrieve was missed (disconnected); dlg.list says hold_caller 0 now
        let retrieved = DLG_LIST_HOLD.replace("{\"hold_caller\":\"1\"}", "{\"hold_caller\":\"0\"}");
        model.resync(&result::<Vec<Dialog>>(&retrieved), &ul, 2, &mut resynced);
        assert_eq!(kinds(&resynced), vec![(TEventKind::Retrieved, "5001".into())]);

        // then the BYE was missed too: dlg.list has the dialog in state 5 only
        let ended = retrieved.replace("\"state\":4", "\"state\":5");
        resynced.clear();
        model.resync(&result::<Vec<Dialog>>(&ended), &ul, 3, &mut resynced);
        let lost = Some(Release { outcome: Outcome::Lost, by: ReleasedBy::Server });
        let releases: Vec<(String, Option<Release>)> = resynced
            .iter()
            .map(|o| match o {
                Output::Call(c) => (c.dn.clone(), c.release),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(releases, vec![("5001".to_string(), lost), ("5002".to_string(), lost)]);
        assert!(model.view().calls.is_empty());

        // the released event arriving later is ignored: the call has ended
        resynced.clear();
        model.on_event(&event(HOLD_CALL[5]), &mut resynced);
        assert_eq!(resynced, vec![]);
    }

    #[test]
    fn early_dialogs_and_registrations_that_went_away() {
        // state 2 (ringing) unknown to the model: Dialing, Ringing
        let ringing = DLG_LIST_HOLD.replace("\"state\":4", "\"state\":2");
        let registered = View {
            calls: BTreeMap::new(),
            registered: BTreeMap::from([("5001".to_string(), BTreeSet::from(["sip:5001@127.0.0.1:5091".to_string()]))]),
        };
        let empty: UlDump = result(UL_DUMP_EMPTY);
        let (view, out) = reconcile(&registered, &filter(), &result::<Vec<Dialog>>(&ringing), &empty, 7);
        assert_eq!(out[0], Output::OutOfService { dn: "5001".into(), time_ms: 7 });
        assert_eq!(kinds(&out[1..]), vec![(TEventKind::Dialing, "5001".into()), (TEventKind::Ringing, "5002".into())]);
        let call = view.calls.values().next().unwrap();
        assert!(!call.held_by_caller, "hold flags count only once answered");
        assert!(view.registered.is_empty());

        // state 1: Dialing only, the callee is not alerted, so a loss releases the caller only
        let trying = DLG_LIST_HOLD.replace("\"state\":4", "\"state\":1");
        let (view, out) = reconcile(&View::default(), &filter(), &result::<Vec<Dialog>>(&trying), &empty, 8);
        assert_eq!(kinds(&out), vec![(TEventKind::Dialing, "5001".into())]);
        let (_, out) = reconcile(&view, &filter(), &[], &empty, 9);
        assert_eq!(kinds(&out), vec![(TEventKind::Released, "5001".into())]);

        // a DN that is not configured gets no InService
        let (view, out) = reconcile(&View::default(), &BTreeSet::from(["5001".to_string()]), &[], &result(UL_DUMP_ONE), 10);
        assert_eq!((view, out), (View::default(), vec![]));
    }
}
