//! `netwatch query ...`: read the projections.

use clap::Subcommand;
use netwatch_projections::http::since_ms;
use netwatch_projections::{open_store, Store};
use serde::Serialize;

use crate::{input, CliError, Ctx};

#[derive(Subcommand, Debug)]
pub enum QueryCmd {
    /// One DN's live state.
    Dn { tserver: i32, dn: String },
    /// Every DN of a T-Server.
    Dns { tserver: i32 },
    /// Calls of a DN, newest first.
    Calls {
        #[arg(long)]
        tserver: i32,
        #[arg(long)]
        dn: String,
        /// Only calls that started within this long before now (15m, 2h, 1d).
        #[arg(long)]
        since: Option<String>,
        /// At most this many calls.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// One call by ConnID.
    Call { tserver: i32, connid: String },
}

fn print<T: Serialize>(value: &T) -> Result<(), CliError> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub async fn run(ctx: &Ctx, cmd: QueryCmd) -> Result<(), CliError> {
    let store = open_store(&ctx.store).map_err(|e| input(e.to_string()))?;
    match cmd {
        QueryCmd::Dn { tserver, dn } => match store.dn(tserver, &dn).await? {
            Some(row) => print(&row),
            None => Err(input(format!("T-Server {tserver} has no DN {dn} in the projection"))),
        },
        QueryCmd::Dns { tserver } => print(&store.dns(tserver).await?),
        QueryCmd::Calls { tserver, dn, since, limit } => {
            let since = since_ms(since.as_deref(), netwatch_schemas::now_ms()).map_err(input)?;
            if !(1..=1000).contains(&limit) {
                return Err(input(format!("limit must be 1..1000, got {limit}")));
            }
            print(&store.dn_calls(tserver, &dn, since, limit).await?)
        }
        QueryCmd::Call { tserver, connid } => match store.call(tserver, &connid).await? {
            Some(row) => print(&row),
            None => Err(input(format!("T-Server {tserver} has no call {connid} in the projection"))),
        },
    }
}
