//! `pxfs check TOKEN [--read-data] [--node URL] [--json]`: is every block of the token's
//! committed tree still on the node? (src/check). Exit status 0: intact; 1: damage found
//! (each damaged file named); 2: the check could not be done (chain, node, key), with one
//! line saying why.

use std::io::IsTerminal;

use anyhow::{Context, bail};
use clap::Args;

use super::progress::Progress;
use super::status::human_bytes;
use crate::chain::{Chain, ChainError, TokenId, signer};
use std::collections::HashMap;

use crate::check::{Damage, Event, Options, Part, Problem, Repair, Sources, Summary};
use crate::cli::ConfigArg;
use crate::config::Config;
use crate::format::TreeCrypto;
use crate::format::usage::{AnyUsageDoc, Encryption};
use crate::keys::{Means, PassphraseSource, TokenRef};
use crate::storage::NodeClient;

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The sNFT
    #[arg(value_name = "TOKEN")]
    pub token: TokenId,
    /// Fetch every block and check its bytes against its CID (otherwise: ask the node
    /// whether it has each block)
    #[arg(long)]
    pub read_data: bool,
    /// Check this node (a replica: a Kubo-RPC-compatible URL) instead of the configured one
    #[arg(long, value_name = "URL")]
    pub node: Option<String>,
    /// One JSON object per damaged file, then the summary as one JSON object
    #[arg(long)]
    pub json: bool,
    /// Put every damaged block back on the node from a good copy (the chunk cache, then
    /// each `[node] replicas`), then check again; the tree is never changed
    #[arg(long)]
    pub repair: bool,
}

/// The process's exit status for a check that ran (1: damage) or could not (2).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Exit {
    pub code: u8,
    pub message: String,
}

pub async fn run(args: CheckArgs) -> anyhow::Result<()> {
    let result = check(&args).await;
    if args.node.is_none() {
        remember(&args, &result);
    }
    match result {
        Ok(sum) if sum.intact() => Ok(()),
        Ok(sum) => Err(Exit {
            code: 1,
            message: format!(
                "token {}: damage found ({} damaged, {} missing and {} corrupt blocks)",
                args.token, sum.damaged, sum.missing, sum.corrupt
            ),
        }
        .into()),
        Err(e) => Err(Exit {
            code: 2,
            message: format!("could not check token {}: {e:#}", args.token),
        }
        .into()),
    }
}

/// Keep the outcome of a check of the configured node for `pxfs status`
/// (src/check/record.rs). Best effort: a check's own output and exit status say it all.
fn remember(args: &CheckArgs, result: &anyhow::Result<Summary>) {
    use crate::check::record::{CheckRecord, Outcome};
    let Ok(cfg) = Config::load(args.config.config.as_deref()) else {
        return;
    };
    let finished_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let record = match result {
        Ok(s) => CheckRecord {
            finished_at,
            read_data: args.read_data,
            outcome: if s.intact() {
                Outcome::Intact
            } else {
                Outcome::Damaged
            },
            files: s.files,
            damaged: s.damaged,
            missing: s.missing,
            corrupt: s.corrupt,
            message: figures(s),
        },
        Err(e) => CheckRecord {
            finished_at,
            read_data: args.read_data,
            outcome: Outcome::NotChecked,
            files: 0,
            damaged: 0,
            missing: 0,
            corrupt: 0,
            message: format!("{e:#}"),
        },
    };
    if let Err(e) = crate::check::record::save(&cfg.cache.dir, args.token, record) {
        tracing::warn!(token = args.token, error = %e, "cannot record the check's outcome");
    }
}

async fn check(args: &CheckArgs) -> anyhow::Result<Summary> {
    let id = args.token;
    let cfg = Config::load(args.config.config.as_deref())?;
    let chain = Chain::connect(&cfg.chain)
        .await
        .context("the chain is unreachable")?;
    let state = chain
        .token(id)
        .await
        .context("reading the token on chain")?;
    let Some(btns) = state.btns_key.filter(|b| !b.trim().is_empty()) else {
        bail!("token {id} has no BTNS name, so it has no tree to check");
    };
    let primary = NodeClient::new(&cfg.node)?;
    let target = match &args.node {
        None => primary.clone(),
        Some(url) => {
            let mut node = cfg.node.clone();
            node.api_url = url.clone();
            NodeClient::new(&node)?
        }
    };
    // The name lives on the configured node; a replica may answer it too.
    let resolved = match crate::btns::resolve(&target, &btns).await {
        Ok(r) => r,
        Err(first) if args.node.is_some() => crate::btns::resolve(&primary, &btns)
            .await
            .map_err(|_| first)
            .with_context(|| format!("resolving {btns}"))?,
        Err(e) => return Err(e).with_context(|| format!("resolving {btns}")),
    };
    let (doc_cid, doc) = resolved;
    let AnyUsageDoc::V2(doc) = doc else {
        bail!(
            "token {id}'s tree is in format v1 ({doc_cid}); `pxfs check` reads format v2 (a mount upgrades the tree)"
        );
    };
    let crypto = match &doc.encryption {
        Encryption::None => TreeCrypto::Plain,
        Encryption::Sealed(info) => {
            let wallet = match signer::load(&cfg.chain) {
                Ok(s) => Some(s),
                Err(ChainError::NoSigner) => None,
                Err(e) => return Err(e.into()),
            };
            let means = Means {
                wallet: wallet.as_ref(),
                passphrase: PassphraseSource::configured(&cfg.keys, std::io::stdin().is_terminal()),
            };
            let token = TokenRef {
                chain_id: chain.chain_id(),
                contract: chain.contract(),
                token_id: id,
            };
            let unlocked = crate::keys::unlock(&token, info, &means).with_context(|| {
                format!("token {id}'s tree is encrypted and this machine cannot open its data key (the page names are needed to name damaged files)")
            })?;
            TreeCrypto::sealed(&unlocked.data_key)
        }
    };
    let opts = Options {
        read_data: args.read_data,
        ..Options::default()
    };
    let replicas: Vec<(String, NodeClient)> = cfg
        .node
        .replicas
        .iter()
        .enumerate()
        .filter(|(_, url)| Some(*url) != args.node.as_ref())
        // Named by position: a URL may carry a key.
        .map(|(i, url)| {
            Ok((
                format!("replica {}", i + 1),
                NodeClient::new(&cfg.node.replica(url))?,
            ))
        })
        .collect::<anyhow::Result<_>>()?;
    let cached = crate::cache::CachedChunks::open(&cfg.cache.dir.join("chunks"));
    let sources = Sources {
        cache: cached.as_ref(),
        replicas: &replicas,
    };
    // A repaired directory page shows entries the round before could not check: checked
    // again while repairs bring something back.
    let mut rounds = 0;
    loop {
        rounds += 1;
        let (sum, damage) = check_once(args, &target, &doc, &doc_cid, &crypto, &opts).await?;
        if !args.repair || sum.intact() || rounds > MAX_REPAIR_ROUNDS {
            return Ok(sum);
        }
        let mut done = HashMap::new();
        let mut repaired = 0;
        for d in &damage {
            match crate::check::repair(&target, d, &sources, &mut done).await {
                Repair::Repaired { from } => {
                    repaired += 1;
                    if args.json {
                        crate::say!("{}", serde_json::json!({"repaired": d.path, "from": from}));
                    } else {
                        crate::say!("repaired: {} (from {})", d.path, from.join(", "));
                    }
                }
                Repair::NotRepaired { why } if args.json => {
                    crate::say!(
                        "{}",
                        serde_json::json!({"not_repaired": d.path, "why": why})
                    );
                }
                Repair::NotRepaired { why } => crate::say!("not repaired: {}: {why}", d.path),
            }
        }
        if repaired == 0 {
            return Ok(sum);
        }
    }
}

/// Rounds of check-and-repair at most (each repaired page can show more damage below it).
const MAX_REPAIR_ROUNDS: u32 = 8;

/// One check of the tree: its summary and, with `--repair`, the damage it found.
async fn check_once(
    args: &CheckArgs,
    target: &NodeClient,
    doc: &crate::format::usage::UsageDoc,
    doc_cid: &str,
    crypto: &TreeCrypto,
    opts: &Options,
) -> anyhow::Result<(Summary, Vec<Damage>)> {
    let id = args.token;
    let json = args.json;
    let mut found = Vec::new();
    // A progress line on a terminal only: piped or logged, the output is the damage and
    // the summary.
    let mut progress = std::io::stderr()
        .is_terminal()
        .then(|| Progress::spinner("check"));
    let mut on = |e: Event<'_>| match e {
        Event::Damaged(d) => {
            if json {
                crate::say!("{}", damage_json(d));
            } else {
                crate::say!("damaged: {d}");
            }
            if args.repair {
                found.push(d.clone());
            }
        }
        Event::Progress(s) => {
            if let Some(p) = progress.as_mut() {
                p.waiting(&figures(s), s.elapsed)
            }
        }
    };
    let sum = crate::check::check_tree(target, &doc.root, crypto, opts, &mut on).await;
    if let Some(p) = progress {
        p.finish(None);
    }
    let sum = sum?;
    if json {
        crate::say!("{}", summary_json(&sum, doc_cid, &doc.root));
    } else {
        let verdict = if sum.intact() { "intact" } else { "DAMAGED" };
        crate::say!(
            "token {id}: {verdict}: {} ({}, root {})",
            figures(&sum),
            if args.read_data {
                "every block read and checked against its CID"
            } else {
                "block presence asked of the node"
            },
            doc.root
        );
    }
    Ok((sum, found))
}

fn figures(s: &Summary) -> String {
    format!(
        "{} files, {} directories{}, {} blocks, {}, {} missing, {} corrupt, {} unreadable, {:.1} s",
        s.files,
        s.directories,
        match s.versions {
            0 => String::new(),
            n => format!(" (and {n} kept versions)"),
        },
        s.blocks,
        human_bytes(s.bytes),
        s.missing,
        s.corrupt,
        s.invalid,
        s.elapsed.as_secs_f64()
    )
}

fn damage_json(d: &Damage) -> serde_json::Value {
    let (problem, detail) = match &d.problem {
        Problem::Missing(why) => ("missing", why.clone()),
        Problem::Corrupt => ("corrupt", String::new()),
        Problem::Invalid(why) => ("unreadable", why.clone()),
    };
    let part = match d.part {
        Part::File => "file",
        Part::Directory => "directory",
        Part::LinkTable => "link-table",
        Part::History => "history",
    };
    serde_json::json!({
        "damaged": d.path,
        "part": part,
        "block": d.cid,
        "problem": problem,
        "detail": detail,
    })
}

fn summary_json(s: &Summary, doc: &str, root: &str) -> serde_json::Value {
    serde_json::json!({
        "intact": s.intact(),
        "document": doc,
        "root": root,
        "files": s.files,
        "directories": s.directories,
        "versions": s.versions,
        "blocks": s.blocks,
        "bytes": s.bytes,
        "missing": s.missing,
        "corrupt": s.corrupt,
        "unreadable": s.invalid,
        "damaged": s.damaged,
        "elapsed_secs": s.elapsed.as_secs_f64(),
    })
}
