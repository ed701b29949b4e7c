//! `netwatch query ...`: read the projections (the same questions as the HTTP API).

use clap::Subcommand;
use netwatch_projections::query::{self, QueryError, Window};
use serde::Serialize;

use crate::{input, CliError, Ctx};

/// `netwatch query`: a question and how to print its answer.
#[derive(clap::Args, Debug)]
pub struct QueryArgs {
    /// `table` for people, `json` for programs (the HTTP API's JSON). Default: a table on a
    /// terminal, JSON otherwise.
    #[arg(long, short = 'o', global = true, value_enum)]
    output: Option<Output>,
    #[command(subcommand)]
    cmd: QueryCmd,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Output {
    Table,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum QueryCmd {
    /// One DN's live state.
    Dn { tserver: i32, dn: String },
    /// Every DN of a T-Server.
    Dns { tserver: i32 },
    /// Calls of a DN, newest first, a page at a time (the next page's token goes to
    /// stderr as `next page: TOKEN`).
    Calls {
        #[arg(long)]
        tserver: i32,
        #[arg(long)]
        dn: String,
        #[command(flatten)]
        window: WindowArgs,
        /// At most this many calls (1..1000).
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Token of the page to show (from the previous page).
        #[arg(long)]
        page: Option<String>,
    },
    /// One call by ConnID.
    Call { tserver: i32, connid: String },
    /// Current state and time in state of a T-Server's DNs and agents (or one DN).
    Current {
        tserver: i32,
        #[arg(long)]
        dn: Option<String>,
    },
    /// 15-minute interval statistics of a T-Server (or one DN); default: the last hour.
    Stats {
        tserver: i32,
        #[arg(long)]
        dn: Option<String>,
        #[command(flatten)]
        window: WindowArgs,
    },
}

#[derive(clap::Args, Debug)]
pub struct WindowArgs {
    /// Only what started within this long before now (15m, 2h, 1d).
    #[arg(long)]
    since: Option<String>,
    /// Only what started at or after this time (ms since the epoch or RFC 3339).
    #[arg(long)]
    from: Option<String>,
    /// Only what started before this time.
    #[arg(long)]
    to: Option<String>,
}

impl From<WindowArgs> for Window {
    fn from(w: WindowArgs) -> Self {
        Window { since: w.since, from: w.from, to: w.to }
    }
}

fn print<T: Serialize>(value: &T, output: Output) -> Result<(), CliError> {
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(value)?),
        Output::Table => print!("{}", crate::table::render(&serde_json::to_value(value)?)),
    }
    Ok(())
}

fn cli_error(e: QueryError) -> CliError {
    match e {
        QueryError::Bad(reason) | QueryError::NotFound(reason) => input(reason),
        QueryError::Store(e) => CliError::Failed(e.into()),
    }
}

pub async fn run(ctx: &Ctx, args: QueryArgs) -> Result<(), CliError> {
    let store = crate::replay::store(ctx).await?;
    let now = netwatch_schemas::now_ms();
    let output = args.output.unwrap_or(if std::io::IsTerminal::is_terminal(&std::io::stdout()) { Output::Table } else { Output::Json });
    match args.cmd {
        QueryCmd::Dn { tserver, dn } => print(&query::dn(&store, tserver, &dn).await.map_err(cli_error)?, output),
        QueryCmd::Dns { tserver } => print(&query::dns(&store, tserver).await.map_err(cli_error)?, output),
        QueryCmd::Calls { tserver, dn, window, limit, page } => {
            let page = query::dn_calls(&store, tserver, &dn, &window.into(), Some(limit), page.as_deref(), now).await.map_err(cli_error)?;
            print(&page.items, output)?;
            if let Some(token) = page.next_page {
                eprintln!("next page: {token}");
            }
            Ok(())
        }
        QueryCmd::Call { tserver, connid } => print(&query::call(&store, tserver, &connid).await.map_err(cli_error)?, output),
        QueryCmd::Current { tserver, dn } => print(&query::current(&store, tserver, dn.as_deref(), now).await.map_err(cli_error)?, output),
        QueryCmd::Stats { tserver, dn, window } => {
            print(&query::intervals(&store, tserver, dn.as_deref(), &window.into(), now).await.map_err(cli_error)?, output)
        }
    }
}
