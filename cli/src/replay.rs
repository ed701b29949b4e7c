//! `netwatch replay <projection>` and `netwatch projections checksum <projection>`.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use clap::Args;
use netwatch_projections::replay::{replay, Progress, Replayed};
use netwatch_projections::{checksum as digest, open_store, AnyStore, Projection, Store, StoreError};
use tokio::sync::watch;

use crate::{input, CliError, Ctx};

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// dn-state, call-history or statistics.
    projection: String,
    /// Consumer group name (after the topic prefix) of the store's projection runners.
    #[arg(long, env = "NETWATCH_PROJECTION_GROUP", default_value = "projection")]
    group: String,
}

#[derive(Args, Debug)]
pub struct ChecksumArgs {
    /// dn-state, call-history or statistics.
    projection: String,
}

/// Open the store named on the command line: a bad URL is bad input (exit 2).
pub async fn store(ctx: &Ctx) -> Result<AnyStore, CliError> {
    match open_store(&ctx.store).await {
        Ok(s) => Ok(s),
        Err(e @ StoreError::Url(_)) => Err(input(e.to_string())),
        Err(e) => Err(CliError::Failed(e.into())),
    }
}

fn projection(name: &str) -> Result<Projection, CliError> {
    name.parse().map_err(input)
}

pub async fn checksum(ctx: &Ctx, args: ChecksumArgs) -> Result<(), CliError> {
    let p = projection(&args.projection)?;
    let store = store(ctx).await?;
    let (gen, rows, hex) = digest(&store, p.name()).await?;
    let at: i64 = store.positions(p.name(), gen).await?.values().sum();
    println!("{hex} {} g{gen} {rows} rows at {at}", p.name());
    Ok(())
}

fn duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// One progress line: a bar of how much of the log the generation holds, events/s, lag,
/// ETA.
fn render(p: &Progress) -> String {
    const WIDTH: usize = 30;
    let done = if p.total > 0 { ((p.total - p.lag).max(0) as f64 / p.total as f64).min(1.0) } else { 1.0 };
    let filled = (done * WIDTH as f64).round() as usize;
    let eta = p.eta.map(duration).unwrap_or_else(|| "?".into());
    format!(
        "g{} [{}{}] {:>3.0}% {} events, {:.0} events/s, lag {}, ETA {}",
        p.gen,
        "#".repeat(filled),
        "-".repeat(WIDTH - filled),
        done * 100.0,
        p.applied,
        p.rate,
        p.lag,
        eta
    )
}

pub async fn run(ctx: &Ctx, args: ReplayArgs) -> Result<(), CliError> {
    let p = projection(&args.projection)?;
    let store = store(ctx).await?;
    let log = ctx.log()?;
    let (tx, shutdown) = watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = tx.send(true);
        }
    });
    let tty = std::io::stderr().is_terminal();
    let show = |progress: &Progress| {
        let line = render(progress);
        let mut err = std::io::stderr().lock();
        let _ = if tty { write!(err, "\r{line}\x1b[K") } else { writeln!(err, "{line}") };
        let _ = err.flush();
    };
    let outcome = replay(log, store.clone(), p, &args.group, show, shutdown).await?;
    if tty {
        eprintln!();
    }
    match outcome {
        Replayed::Switched { from, to } => {
            let (gen, rows, hex) = digest(&store, p.name()).await?;
            let from = from.map(|g| format!("g{g}")).unwrap_or_else(|| "nothing".into());
            println!(
                "{} rebuilt: readers switched from {from} to g{to}, old generation dropped; checksum {hex} g{gen} {rows} rows",
                p.name()
            );
            Ok(())
        }
        Replayed::Interrupted { gen } => {
            Err(CliError::Failed(anyhow::anyhow!("replay of {} stopped before catching up; run it again to resume g{gen}", p.name())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_progress_line_shows_rate_lag_and_eta() {
        let p = Progress { gen: 2, applied: 500, lag: 500, total: 1000, rate: 250.0, eta: Some(Duration::from_secs(2)) };
        assert_eq!(render(&p), "g2 [###############---------------]  50% 500 events, 250 events/s, lag 500, ETA 2s");
    }
}
