//! `pxfs status`: the wallet's sNFTs with quota, usage and sync state, as a table or JSON.

use anyhow::Context;
use clap::Args;
use serde::Serialize;

use super::ConfigArg;
use crate::chain::{Chain, TokenId, TokenState};
use crate::config::Config;

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

/// The `--json` document; field names are a stable interface for scripts.
#[derive(Debug, Serialize)]
struct StatusReport {
    wallet: String,
    chain_id: u64,
    contract: String,
    tokens: Vec<TokenReport>,
}

#[derive(Debug, Serialize)]
struct TokenReport {
    token_id: TokenId,
    quota: u64,
    usage: u64,
    last_sync: u64,
    sync_deadline: u64,
    time_left: u64,
    overdue: bool,
    btns_key: Option<String>,
}

impl From<&TokenState> for TokenReport {
    fn from(t: &TokenState) -> Self {
        TokenReport {
            token_id: t.token_id,
            quota: t.quota,
            usage: t.usage,
            last_sync: t.last_sync,
            sync_deadline: t.sync_deadline,
            time_left: t.seconds_left(),
            overdue: t.overdue,
            btns_key: t.btns_key.clone(),
        }
    }
}

pub async fn run(args: StatusArgs) -> anyhow::Result<()> {
    let cfg = Config::load(args.config.config.as_deref())?;
    let chain = Chain::connect(&cfg.chain).await?;
    let mut tokens = Vec::new();
    for id in chain.owned_tokens().await? {
        tokens.push(
            chain
                .token(id)
                .await
                .with_context(|| format!("token {id}"))?,
        );
    }
    let report = StatusReport {
        wallet: chain.wallet().to_checksum(None),
        chain_id: chain.chain_id(),
        contract: chain.contract().to_checksum(None),
        tokens: tokens.iter().map(TokenReport::from).collect(),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

fn print_table(r: &StatusReport) {
    println!(
        "wallet {} on chain {}, contract {}",
        r.wallet, r.chain_id, r.contract
    );
    if r.tokens.is_empty() {
        println!("no sNFTs; mint one with `pxfs mint --package 0`");
        return;
    }
    println!(
        "{:>8}  {:>10}  {:>10}  {:>5}  {:>20}  {:>12}  {:<8}  btns key",
        "token", "quota", "usage", "used", "sync deadline (UTC)", "time left", "state"
    );
    for t in &r.tokens {
        let used = match t.quota {
            0 => 0,
            q => (u128::from(t.usage) * 100 / u128::from(q)) as u64,
        };
        println!(
            "{:>8}  {:>10}  {:>10}  {:>4}%  {:>20}  {:>12}  {:<8}  {}",
            t.token_id,
            human_bytes(t.quota),
            human_bytes(t.usage),
            used,
            utc(t.sync_deadline),
            human_duration(t.time_left),
            if t.overdue { "OVERDUE" } else { "ok" },
            t.btns_key.as_deref().unwrap_or("-"),
        );
    }
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{n} B"),
        _ => format!("{v:.1} {}", UNITS[unit]),
    }
}

fn human_duration(secs: u64) -> String {
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3_600, secs % 3_600 / 60);
    match (d, h) {
        (0, 0) => format!("{m}m {}s", secs % 60),
        (0, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS` (civil-from-days, proleptic Gregorian).
fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00");
    }

    #[test]
    fn sizes_and_durations_read_naturally() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(100 << 20), "100.0 MiB");
        assert_eq!(human_duration(30 * 86_400 + 3_600), "30d 1h");
        assert_eq!(human_duration(59), "0m 59s");
    }
}
