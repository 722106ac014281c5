//! The storage node client a command uses: the configured node with its bearer token, or
//! PollinationX's hosted nodes through a wallet login (one endpoint and JWT per sNFT).

use std::sync::Arc;

use anyhow::Context;

use crate::config::{Config, NodeAuth};
use crate::storage::HostedLogin;
use crate::storage::NodeClient;

/// The node client of a mount. On PollinationX's hosted nodes (`[node] auth =
/// "pollinationx"`) each sNFT has its own endpoint and JWT from one wallet login: with
/// exactly one sNFT (`--token ID`) the client is bound to it; otherwise it is unbound and
/// the core binds it per sNFT (`ContentStore::for_token`), so each sNFT's uploads, reads
/// and usage documents go to its own endpoint with its own JWT.
pub(crate) fn node_client(cfg: &Config, tokens: &[u64]) -> anyhow::Result<NodeClient> {
    match cfg.node.auth {
        NodeAuth::Bearer => NodeClient::new(&cfg.node).context("node client"),
        NodeAuth::PollinationX => {
            let signer = crate::chain::signer::load(&cfg.chain)
                .context("the hosted-node login signs with the wallet's key")?;
            hosted_client(cfg, tokens, signer)
        }
    }
}

fn hosted_client(
    cfg: &Config,
    tokens: &[u64],
    signer: alloy::signers::local::PrivateKeySigner,
) -> anyhow::Result<NodeClient> {
    let login = HostedLogin::new(&cfg.node, cfg.chain.chain_id, &cfg.chain.contract, signer)?;
    let client = NodeClient::hosted(&cfg.node, Arc::new(login))?;
    Ok(match tokens {
        [token] => client.for_token(*token),
        _ => client,
    })
}

/// The mount's client with reads falling back to `[node] replicas`, and the replicas'
/// workers, which copy every committed tree there from the primary.
pub(crate) fn with_replicas(
    cfg: &Config,
    primary: NodeClient,
) -> anyhow::Result<(NodeClient, Option<Arc<crate::replica::Replicas>>)> {
    if cfg.node.replicas.is_empty() {
        return Ok((primary, None));
    }
    let named = cfg
        .node
        .replicas
        .iter()
        .map(|url| {
            NodeClient::new(&cfg.node.replica(url))
                .map(|c| (url.clone(), c))
                .with_context(|| format!("replica {url}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let reads = primary.with_fallbacks(named.iter().map(|(_, c)| c.clone()).collect());
    let workers =
        crate::replica::Replicas::start(primary, named, tokio_util::sync::CancellationToken::new());
    Ok((reads, Some(workers)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosted_config() -> Config {
        toml::from_str(
            r#"
[chain]
rpc_url = "http://127.0.0.1:8545"
chain_id = 31337
contract = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
wallet = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
[node]
api_url = "http://127.0.0.1:5001"
auth = "pollinationx"
auth_url = "http://127.0.0.1:9"
login_message = "hi"
"#,
        )
        .unwrap()
    }

    #[test]
    fn a_hosted_client_is_bound_to_one_token_or_left_for_the_core_to_bind() {
        let cfg = hosted_config();
        let signer = || crate::chain::anvil::DEV_KEYS[0].parse().unwrap();
        let one = hosted_client(&cfg, &[7], signer()).unwrap();
        assert_eq!(one.hosted_token(), Some(7));
        for tokens in [&[][..], &[1, 2][..]] {
            let client = hosted_client(&cfg, tokens, signer()).unwrap();
            assert!(client.is_hosted());
            assert_eq!(client.hosted_token(), None);
        }
    }

    #[test]
    fn other_commands_refuse_a_hosted_node_clearly() {
        let err = NodeClient::new(&hosted_config().node)
            .unwrap_err()
            .to_string();
        assert!(err.contains("works for `pxfs mount` only"), "{err}");
    }
}
