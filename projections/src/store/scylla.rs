//! The ScyllaDB store: `scylla://host1[:port],host2/keyspace[?replication_factor=N&datacenter=DC]`.
//!
//! Tables: schemas/cql/projections.cql, created on connect in a keyspace with
//! NetworkTopologyStrategy. Every statement is prepared once. A batch's rows and
//! positions go in one LOGGED batch (all or nothing, eventually), each row `USING
//! TIMESTAMP` of the log position it reflects ([`Batch::stamps`]) and each position
//! `USING TIMESTAMP` of its offset, so a repeated or stale write never overwrites a
//! newer one.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::StreamExt;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::statement::batch::{Batch as CqlBatch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlValue;

use super::{interval_of, Batch, CallsPage, Gen, GenState, Store, StoreError};
use crate::rows::{CallRecord, DnCall, DnState};

const SCHEMA: &str = include_str!("../../../schemas/cql/projections.cql");

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Scylla(e.to_string())
}

/// Where a `scylla://` URL points.
#[derive(Debug, PartialEq, Eq)]
pub struct ScyllaUrl {
    pub nodes: Vec<String>,
    pub keyspace: String,
    pub replication_factor: u32,
    pub datacenter: String,
}

impl ScyllaUrl {
    /// Parse `scylla://h1[:p],h2/keyspace[?replication_factor=N&datacenter=DC]`.
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        let bad = || StoreError::Url(url.to_string());
        let rest = url.strip_prefix("scylla://").ok_or_else(bad)?;
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (hosts, keyspace) = rest.split_once('/').ok_or_else(bad)?;
        let valid_name = !keyspace.is_empty()
            && keyspace.len() <= 48
            && keyspace.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !keyspace.starts_with(|c: char| c.is_ascii_digit());
        let nodes: Vec<String> =
            hosts.split(',').filter(|h| !h.is_empty()).map(|h| if h.contains(':') { h.to_string() } else { format!("{h}:9042") }).collect();
        if nodes.is_empty() || !valid_name {
            return Err(bad());
        }
        let mut parsed = ScyllaUrl { nodes, keyspace: keyspace.to_string(), replication_factor: 3, datacenter: "datacenter1".into() };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("replication_factor", n)) => parsed.replication_factor = n.parse().ok().filter(|n| *n > 0).ok_or_else(bad)?,
                Some(("datacenter", dc)) if !dc.is_empty() && dc.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') => {
                    parsed.datacenter = dc.to_string()
                }
                _ => return Err(bad()),
            }
        }
        Ok(parsed)
    }
}

struct Prepared {
    generations: PreparedStatement,
    set_generation: PreparedStatement,
    position: PreparedStatement,
    positions: PreparedStatement,
    delete_positions: PreparedStatement,
    dn: PreparedStatement,
    dns: PreparedStatement,
    call: PreparedStatement,
    dn_calls: PreparedStatement,
    interval_legs: PreparedStatement,
    interval_legs_dn: PreparedStatement,
    put_dn: PreparedStatement,
    put_call: PreparedStatement,
    put_dn_call: PreparedStatement,
    put_leg: PreparedStatement,
    put_position: PreparedStatement,
    stat_row: PreparedStatement,
    stat_range: PreparedStatement,
    put_stat: PreparedStatement,
}

/// A session and its prepared statements.
#[derive(Clone)]
pub struct ScyllaStore {
    session: Arc<Session>,
    p: Arc<Prepared>,
}

impl ScyllaStore {
    /// Connect, create the keyspace and tables if missing, prepare every statement.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let u = ScyllaUrl::parse(url)?;
        let session = SessionBuilder::new().known_nodes(&u.nodes).build().await.map_err(err)?;
        let keyspace = format!(
            "CREATE KEYSPACE IF NOT EXISTS {} WITH replication = {{'class': 'NetworkTopologyStrategy', '{}': {}}}",
            u.keyspace, u.datacenter, u.replication_factor
        );
        session.query_unpaged(keyspace, &[]).await.map_err(err)?;
        session.use_keyspace(&u.keyspace, false).await.map_err(err)?;
        for statement in schema_statements() {
            session.query_unpaged(statement, &[]).await.map_err(err)?;
        }
        let prep = |cql: &'static str| {
            let session = &session;
            async move { session.prepare(cql).await.map_err(err) }
        };
        let p = Prepared {
            generations: prep("SELECT gen, state FROM generations WHERE projection = ?").await?,
            set_generation: prep("INSERT INTO generations (projection, gen, state) VALUES (?, ?, ?)").await?,
            position: prep("SELECT next_offset FROM positions WHERE projection = ? AND gen = ? AND topic = ? AND partition = ?").await?,
            positions: prep("SELECT topic, partition, next_offset FROM positions WHERE projection = ? AND gen = ?").await?,
            delete_positions: prep("DELETE FROM positions WHERE projection = ? AND gen = ?").await?,
            dn: prep("SELECT row FROM dn_state WHERE gen = ? AND tserver = ? AND dn = ?").await?,
            dns: prep("SELECT row FROM dn_state WHERE gen = ? AND tserver = ?").await?,
            call: prep("SELECT row FROM calls WHERE gen = ? AND tserver = ? AND connid = ?").await?,
            dn_calls: prep(
                "SELECT row FROM dn_calls WHERE gen = ? AND tserver = ? AND dn = ? AND (started_ms, connid) >= (?, '') \
                 AND (started_ms, connid) < (?, ?) LIMIT ?",
            )
            .await?,
            interval_legs: prep("SELECT row FROM interval_legs WHERE gen = ? AND tserver = ? AND interval_ms = ?").await?,
            interval_legs_dn: prep("SELECT row FROM interval_legs WHERE gen = ? AND tserver = ? AND interval_ms = ? AND dn = ?").await?,
            put_dn: prep("INSERT INTO dn_state (gen, tserver, dn, row) VALUES (?, ?, ?, ?) USING TIMESTAMP ?").await?,
            put_call: prep("INSERT INTO calls (gen, tserver, connid, row) VALUES (?, ?, ?, ?) USING TIMESTAMP ?").await?,
            put_dn_call: prep(
                "INSERT INTO dn_calls (gen, tserver, dn, started_ms, connid, row) VALUES (?, ?, ?, ?, ?, ?) USING TIMESTAMP ?",
            )
            .await?,
            put_leg: prep(
                "INSERT INTO interval_legs (gen, tserver, interval_ms, dn, started_ms, connid, row) VALUES (?, ?, ?, ?, ?, ?, ?) \
                 USING TIMESTAMP ?",
            )
            .await?,
            put_position: prep(
                "INSERT INTO positions (projection, gen, topic, partition, next_offset) VALUES (?, ?, ?, ?, ?) USING TIMESTAMP ?",
            )
            .await?,
            stat_row: prep("SELECT row FROM stats WHERE gen = ? AND tserver = ? AND part = ? AND key = ?").await?,
            stat_range: prep("SELECT key, row FROM stats WHERE gen = ? AND tserver = ? AND part = ? AND key >= ? AND key < ?").await?,
            put_stat: prep("INSERT INTO stats (gen, tserver, part, key, row) VALUES (?, ?, ?, ?, ?) USING TIMESTAMP ?").await?,
        };
        Ok(ScyllaStore { session: Arc::new(session), p: Arc::new(p) })
    }

    async fn texts(&self, stmt: &PreparedStatement, values: Vec<CqlValue>) -> Result<Vec<String>, StoreError> {
        let result = self.session.execute_unpaged(stmt, values).await.map_err(err)?.into_rows_result().map_err(err)?;
        let rows = result.rows::<(String,)>().map_err(err)?;
        rows.map(|r| r.map(|(t,)| t).map_err(err)).collect()
    }

    async fn json<T: serde::de::DeserializeOwned>(&self, stmt: &PreparedStatement, values: Vec<CqlValue>) -> Result<Vec<T>, StoreError> {
        self.texts(stmt, values).await?.iter().map(|t| serde_json::from_str(t).map_err(StoreError::from)).collect()
    }

    /// Every partition key of a table (full scan; used to drop a generation).
    async fn scan<R>(&self, cql: &'static str) -> Result<Vec<R>, StoreError>
    where
        R: for<'f, 'm> scylla::deserialize::row::DeserializeRow<'f, 'm> + Send + 'static,
    {
        let pager = self.session.query_iter(cql, &[]).await.map_err(err)?;
        let mut stream = pager.rows_stream::<R>().map_err(err)?;
        let mut out = Vec::new();
        while let Some(row) = stream.next().await {
            out.push(row.map_err(err)?);
        }
        Ok(out)
    }
}

/// The statements of schemas/cql/projections.cql, comments stripped.
fn schema_statements() -> Vec<String> {
    let text: String = SCHEMA.lines().filter(|l| !l.trim_start().starts_with("--")).collect::<Vec<_>>().join("\n");
    text.split(';').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
}

fn int(v: i32) -> CqlValue {
    CqlValue::Int(v)
}

fn gen_value(gen: Gen) -> CqlValue {
    CqlValue::Int(gen as i32)
}

fn long(v: i64) -> CqlValue {
    CqlValue::BigInt(v)
}

fn text(v: &str) -> CqlValue {
    CqlValue::Text(v.to_string())
}

impl Store for ScyllaStore {
    async fn generations(&self, projection: &str) -> Result<Vec<(Gen, GenState)>, StoreError> {
        let result = self.session.execute_unpaged(&self.p.generations, vec![text(projection)]).await.map_err(err)?;
        let rows = result.into_rows_result().map_err(err)?;
        let mut out = Vec::new();
        for row in rows.rows::<(i32, String)>().map_err(err)? {
            let (gen, state) = row.map_err(err)?;
            out.push((gen as Gen, GenState::parse(&state)?));
        }
        out.sort_by_key(|(g, _)| *g);
        Ok(out)
    }

    async fn set_generation(&self, projection: &str, gen: Gen, state: GenState) -> Result<(), StoreError> {
        let values = vec![text(projection), gen_value(gen), text(state.as_str())];
        self.session.execute_unpaged(&self.p.set_generation, values).await.map_err(err)?;
        Ok(())
    }

    async fn switch_generation(&self, projection: &str, from: Option<Gen>, to: Gen) -> Result<(), StoreError> {
        // One partition (the projection), so the logged batch applies atomically and
        // in isolation.
        let mut batch = CqlBatch::new(BatchType::Logged);
        let mut values = Vec::new();
        if let Some(from) = from {
            batch.append_statement(self.p.set_generation.clone());
            values.push(vec![text(projection), gen_value(from), text(GenState::Retired.as_str())]);
        }
        batch.append_statement(self.p.set_generation.clone());
        values.push(vec![text(projection), gen_value(to), text(GenState::Current.as_str())]);
        self.session.batch(&batch, values).await.map_err(err)?;
        Ok(())
    }

    async fn drop_generation(&self, projection: &str, gen: Gen) -> Result<(), StoreError> {
        let g = gen as i32;
        if projection == "statistics" {
            for (pg, tserver, part) in self.scan::<(i32, i32, String)>("SELECT DISTINCT gen, tserver, part FROM stats").await? {
                if pg == g {
                    self.session
                        .query_unpaged("DELETE FROM stats WHERE gen = ? AND tserver = ? AND part = ?", (g, tserver, part))
                        .await
                        .map_err(err)?;
                }
            }
        } else if projection == "dn-state" {
            for (pg, tserver) in self.scan::<(i32, i32)>("SELECT DISTINCT gen, tserver FROM dn_state").await? {
                if pg == g {
                    self.session.query_unpaged("DELETE FROM dn_state WHERE gen = ? AND tserver = ?", (g, tserver)).await.map_err(err)?;
                }
            }
        } else {
            for (pg, tserver, connid) in self.scan::<(i32, i32, String)>("SELECT DISTINCT gen, tserver, connid FROM calls").await? {
                if pg == g {
                    self.session
                        .query_unpaged("DELETE FROM calls WHERE gen = ? AND tserver = ? AND connid = ?", (g, tserver, connid))
                        .await
                        .map_err(err)?;
                }
            }
            for (pg, tserver, dn) in self.scan::<(i32, i32, String)>("SELECT DISTINCT gen, tserver, dn FROM dn_calls").await? {
                if pg == g {
                    self.session
                        .query_unpaged("DELETE FROM dn_calls WHERE gen = ? AND tserver = ? AND dn = ?", (g, tserver, dn))
                        .await
                        .map_err(err)?;
                }
            }
            for (pg, tserver, interval) in
                self.scan::<(i32, i32, i64)>("SELECT DISTINCT gen, tserver, interval_ms FROM interval_legs").await?
            {
                if pg == g {
                    self.session
                        .query_unpaged(
                            "DELETE FROM interval_legs WHERE gen = ? AND tserver = ? AND interval_ms = ?",
                            (g, tserver, interval),
                        )
                        .await
                        .map_err(err)?;
                }
            }
        }
        self.session.execute_unpaged(&self.p.delete_positions, vec![text(projection), gen_value(gen)]).await.map_err(err)?;
        Ok(())
    }

    async fn position(&self, projection: &str, gen: Gen, topic: &str, partition: i32) -> Result<Option<i64>, StoreError> {
        let values = vec![text(projection), gen_value(gen), text(topic), int(partition)];
        let result = self.session.execute_unpaged(&self.p.position, values).await.map_err(err)?.into_rows_result().map_err(err)?;
        Ok(result.maybe_first_row::<(i64,)>().map_err(err)?.map(|(o,)| o))
    }

    async fn positions(&self, projection: &str, gen: Gen) -> Result<BTreeMap<(String, i32), i64>, StoreError> {
        let result = self
            .session
            .execute_unpaged(&self.p.positions, vec![text(projection), gen_value(gen)])
            .await
            .map_err(err)?
            .into_rows_result()
            .map_err(err)?;
        let mut out = BTreeMap::new();
        for row in result.rows::<(String, i32, i64)>().map_err(err)? {
            let (topic, partition, next) = row.map_err(err)?;
            out.insert((topic, partition), next);
        }
        Ok(out)
    }

    async fn dn(&self, gen: Gen, tserver: i32, dn: &str) -> Result<Option<DnState>, StoreError> {
        Ok(self.json(&self.p.dn, vec![gen_value(gen), int(tserver), text(dn)]).await?.pop())
    }

    async fn dns(&self, gen: Gen, tserver: i32) -> Result<Vec<DnState>, StoreError> {
        self.json(&self.p.dns, vec![gen_value(gen), int(tserver)]).await
    }

    async fn call(&self, gen: Gen, tserver: i32, connid: &str) -> Result<Option<CallRecord>, StoreError> {
        Ok(self.json(&self.p.call, vec![gen_value(gen), int(tserver), text(connid)]).await?.pop())
    }

    async fn dn_calls(&self, gen: Gen, tserver: i32, dn: &str, page: &CallsPage) -> Result<Vec<DnCall>, StoreError> {
        let (before_ms, before_connid) = match &page.after {
            Some(c) => (c.started_ms, c.connid.clone()),
            None => (page.to_ms, String::new()),
        };
        let values = vec![
            gen_value(gen),
            int(tserver),
            text(dn),
            long(page.from_ms),
            long(before_ms),
            text(&before_connid),
            int(page.limit.min(i32::MAX as usize) as i32),
        ];
        self.json(&self.p.dn_calls, values).await
    }

    async fn interval_legs(&self, gen: Gen, tserver: i32, interval_ms: i64, dn: Option<&str>) -> Result<Vec<DnCall>, StoreError> {
        match dn {
            Some(dn) => self.json(&self.p.interval_legs_dn, vec![gen_value(gen), int(tserver), long(interval_ms), text(dn)]).await,
            None => self.json(&self.p.interval_legs, vec![gen_value(gen), int(tserver), long(interval_ms)]).await,
        }
    }

    async fn stat_row(&self, gen: Gen, tserver: i32, part: &str, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self.texts(&self.p.stat_row, vec![gen_value(gen), int(tserver), text(part), text(key)]).await?.pop())
    }

    async fn stat_range(
        &self,
        gen: Gen,
        tserver: i32,
        part: &str,
        from_key: &str,
        to_key: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let values = vec![gen_value(gen), int(tserver), text(part), text(from_key), text(to_key)];
        let result = self.session.execute_unpaged(&self.p.stat_range, values).await.map_err(err)?.into_rows_result().map_err(err)?;
        let rows = result.rows::<(String, String)>().map_err(err)?;
        rows.map(|r| r.map_err(err)).collect()
    }

    async fn prune_minutes(&self, before_ms: i64) -> Result<u64, StoreError> {
        let before = crate::stat_fold::bucket_key('m', before_ms);
        let mut parts = 0;
        for (g, tserver, part) in self.scan::<(i32, i32, String)>("SELECT DISTINCT gen, tserver, part FROM stats").await? {
            if part.starts_with("b:") {
                self.session
                    .query_unpaged(
                        "DELETE FROM stats WHERE gen = ? AND tserver = ? AND part = ? AND key >= 'm:' AND key < ?",
                        (g, tserver, part, before.as_str()),
                    )
                    .await
                    .map_err(err)?;
                parts += 1;
            }
        }
        Ok(parts)
    }

    async fn dump(&self, projection: &str, gen: Gen) -> Result<Vec<String>, StoreError> {
        let g = gen as i32;
        if projection == "statistics" {
            let mut rows: Vec<((i32, String, String), String)> = self
                .scan::<(i32, i32, String, String, String)>("SELECT gen, tserver, part, key, row FROM stats")
                .await?
                .into_iter()
                .filter(|(pg, _, _, key, _)| *pg == g && !key.starts_with("m:"))
                .map(|(_, t, part, key, row)| ((t, part, key), row))
                .collect();
            rows.sort();
            return Ok(rows.into_iter().map(|((t, part, key), row)| format!("{t} {part} {key} {row}")).collect());
        }
        let mut keyed: Vec<((i32, String), String)> = if projection == "dn-state" {
            self.scan::<(i32, i32, String, String)>("SELECT gen, tserver, dn, row FROM dn_state").await?
        } else {
            self.scan::<(i32, i32, String, String)>("SELECT gen, tserver, connid, row FROM calls").await?
        }
        .into_iter()
        .filter(|(pg, ..)| *pg == g)
        .map(|(_, t, k, row)| ((t, k), row))
        .collect();
        keyed.sort();
        Ok(keyed.into_iter().map(|(_, row)| row).collect())
    }

    /// Small batches: one store write is one logged batch, which ScyllaDB refuses beyond
    /// `batch_size_fail_threshold_in_kb` (1 MiB by default).
    fn max_batch(&self) -> usize {
        50
    }

    async fn write(&self, batch: Batch) -> Result<(), StoreError> {
        if self.generations(&batch.projection).await?.contains(&(batch.gen, GenState::Retired)) {
            return Err(StoreError::Retired { projection: batch.projection.clone(), gen: batch.gen });
        }
        let gen = gen_value(batch.gen);
        let stamp = |tserver: i32| long(batch.stamps.get(&tserver).copied().unwrap_or(0));
        let mut cql = CqlBatch::new(BatchType::Logged);
        let mut values: Vec<Vec<CqlValue>> = Vec::new();
        for ((tserver, dn), row) in &batch.dns {
            cql.append_statement(self.p.put_dn.clone());
            values.push(vec![gen.clone(), int(*tserver), text(dn), text(&serde_json::to_string(row)?), stamp(*tserver)]);
        }
        for ((tserver, connid), call) in &batch.calls {
            cql.append_statement(self.p.put_call.clone());
            values.push(vec![gen.clone(), int(*tserver), text(connid), text(&serde_json::to_string(call)?), stamp(*tserver)]);
        }
        for row in batch.legs() {
            let json = serde_json::to_string(&row)?;
            cql.append_statement(self.p.put_dn_call.clone());
            values.push(vec![
                gen.clone(),
                int(row.tserver),
                text(&row.dn),
                long(row.started_ms),
                text(&row.connid),
                text(&json),
                stamp(row.tserver),
            ]);
            if row.ended_ms.is_some() {
                cql.append_statement(self.p.put_leg.clone());
                values.push(vec![
                    gen.clone(),
                    int(row.tserver),
                    long(interval_of(row.started_ms)),
                    text(&row.dn),
                    long(row.started_ms),
                    text(&row.connid),
                    text(&json),
                    stamp(row.tserver),
                ]);
            }
        }
        for ((tserver, part, key), row) in &batch.stats {
            cql.append_statement(self.p.put_stat.clone());
            values.push(vec![gen.clone(), int(*tserver), text(part), text(key), text(row), stamp(*tserver)]);
        }
        for ((topic, partition), next) in &batch.positions {
            cql.append_statement(self.p.put_position.clone());
            values.push(vec![text(&batch.projection), gen.clone(), text(topic), int(*partition), long(*next), long(*next)]);
        }
        if !values.is_empty() {
            self.session.batch(&cql, values).await.map_err(err)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_nodes_keyspace_and_replication() {
        let u = ScyllaUrl::parse("scylla://a,b:19042/netwatch?replication_factor=2&datacenter=dc1").unwrap();
        assert_eq!(u.nodes, ["a:9042", "b:19042"]);
        assert_eq!((u.keyspace.as_str(), u.replication_factor, u.datacenter.as_str()), ("netwatch", 2, "dc1"));
        let d = ScyllaUrl::parse("scylla://a/ks").unwrap();
        assert_eq!((d.replication_factor, d.datacenter.as_str()), (3, "datacenter1"));
        for bad in ["scylla://a", "scylla:///ks", "scylla://a/ks;drop", "scylla://a/ks?replication_factor=0", "scylla://a/ks?x=1"] {
            assert!(ScyllaUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_cql_file_splits_into_its_tables() {
        let s = schema_statements();
        assert_eq!(s.len(), 7);
        assert!(s.iter().all(|s| s.starts_with("CREATE TABLE IF NOT EXISTS")), "{s:?}");
    }
}
