//! Login to PollinationX's hosted nodes (`[node] auth = "pollinationx"`): the wallet signs
//! the fixed login message (EIP-191 `personal_sign`), `GET <auth>/auth/v2/login` answers
//! with one JWT and one node endpoint per sNFT of the wallet. Grants are kept in memory
//! only, renewed shortly before the JWT's `exp` and after a 401, and never logged: every
//! `Debug` here redacts the JWT, and a login answer is never quoted in an error (it holds
//! JWTs). The signature is a reusable credential too (the message is fixed): the login
//! URL that carries it is never logged or put in an error either.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use alloy::signers::Signer;
use alloy::signers::local::PrivateKeySigner;
use base64::Engine;
use serde_json::Value;
use tokio::sync::Mutex;

use super::error::StorageError;
use crate::config::NodeConfig;

/// Renew a grant when less than this is left of it (or a quarter of its lifetime, if
/// shorter), so a request never starts with a JWT about to expire.
const RENEW_MARGIN: Duration = Duration::from_secs(60);
const LOGIN_PATH: &str = "auth/v2/login";

/// One sNFT's access to its hosted node.
#[derive(Clone)]
pub struct Grant {
    /// The node's API base as the login gave it, e.g. `https://node/api/v1/`.
    pub endpoint: String,
    jwt: String,
    /// Unix seconds; `None`: the JWT has no readable `exp` (renewed only after a 401).
    expires: Option<u64>,
    obtained: u64,
    /// Which login produced it, so a 401 renews once however many requests saw it.
    pub(crate) generation: u64,
}

impl Grant {
    /// The JWT, for the `Authorization` header only.
    pub(crate) fn jwt(&self) -> &str {
        &self.jwt
    }

    fn fresh(&self, now: u64) -> bool {
        match self.expires {
            None => true,
            Some(exp) => {
                let lifetime = exp.saturating_sub(self.obtained);
                let margin = RENEW_MARGIN.as_secs().min(lifetime / 4);
                now + margin < exp
            }
        }
    }
}

impl std::fmt::Debug for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grant")
            .field("endpoint", &self.endpoint)
            .field("jwt", &"<redacted>")
            .field("expires", &self.expires)
            .finish()
    }
}

/// The wallet's login to the hosted nodes, shared by the clients of all its sNFTs.
pub struct HostedLogin {
    http: reqwest::Client,
    auth_url: String,
    message: String,
    chain_id: u64,
    /// Lower-case contract address: grants for other contracts are ignored.
    contract: String,
    signer: PrivateKeySigner,
    timeout: Duration,
    state: Mutex<Grants>,
}

#[derive(Default)]
struct Grants {
    by_token: HashMap<u64, Grant>,
    generation: u64,
}

impl std::fmt::Debug for HostedLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostedLogin")
            .field("auth_url", &self.auth_url)
            .field("wallet", &self.signer.address())
            .field("chain_id", &self.chain_id)
            .finish_non_exhaustive()
    }
}

impl HostedLogin {
    /// The login for `node` (`auth_url`, `login_message`), signing with `signer` (the
    /// wallet key from `PXFS_PRIVATE_KEY` or the keystore), for `contract` on `chain_id`.
    pub fn new(
        node: &NodeConfig,
        chain_id: u64,
        contract: &str,
        signer: PrivateKeySigner,
    ) -> Result<HostedLogin, StorageError> {
        let auth_url = node.auth_url.clone().ok_or_else(|| {
            StorageError::Config("[node] auth = \"pollinationx\" needs auth_url".into())
        })?;
        let parsed = reqwest::Url::parse(&auth_url)
            .map_err(|e| StorageError::Config(format!("auth_url {auth_url:?}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(StorageError::Config(format!(
                "auth_url {auth_url:?}: only http and https are supported"
            )));
        }
        let message = node.login_message.clone().ok_or_else(|| {
            StorageError::Config(
                "[node] auth = \"pollinationx\" needs login_message (the message PollinationX's dApp has the wallet sign)".into(),
            )
        })?;
        let timeout = Duration::from_secs(node.timeout_secs.max(1));
        let http = reqwest::Client::builder()
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .timeout(timeout)
            .build()
            .map_err(|e| StorageError::Config(super::transport::error_chain(&e)))?;
        Ok(HostedLogin {
            http,
            auth_url: auth_url.trim_end_matches('/').to_string(),
            message,
            chain_id,
            contract: contract.trim().to_lowercase(),
            signer,
            timeout,
            state: Mutex::new(Grants::default()),
        })
    }

    /// `token`'s grant, logging in first when there is none or it is about to expire.
    pub async fn grant(&self, token: u64) -> Result<Grant, StorageError> {
        let mut state = self.state.lock().await;
        if let Some(g) = state.by_token.get(&token)
            && g.fresh(unix_now())
        {
            return Ok(g.clone());
        }
        self.login(&mut state).await?;
        self.pick(&state, token)
    }

    /// After the node refused `token`'s grant of `generation` (401): log in again, unless
    /// another request already did.
    pub async fn renew(&self, token: u64, generation: u64) -> Result<Grant, StorageError> {
        let mut state = self.state.lock().await;
        if let Some(g) = state.by_token.get(&token)
            && g.generation > generation
        {
            return Ok(g.clone());
        }
        self.login(&mut state).await?;
        self.pick(&state, token)
    }

    fn pick(&self, state: &Grants, token: u64) -> Result<Grant, StorageError> {
        state
            .by_token
            .get(&token)
            .cloned()
            .ok_or_else(|| StorageError::Login {
                url: self.login_url(),
                detail: format!(
                    "the login gives the wallet {} no access to sNFT {token} of {}",
                    self.signer.address(),
                    self.contract
                ),
                transient: false,
            })
    }

    fn login_url(&self) -> String {
        format!("{}/{LOGIN_PATH}", self.auth_url)
    }

    async fn login(&self, state: &mut Grants) -> Result<(), StorageError> {
        let url = self.login_url();
        let failed = |detail: String, transient: bool| StorageError::Login {
            url: url.clone(),
            detail,
            transient,
        };
        let signature = self
            .signer
            .sign_message(self.message.as_bytes())
            .await
            .map_err(|e| failed(format!("cannot sign the login message: {e}"), false))?;
        let wallet = self.signer.address().to_string();
        let chain = format!("0x{:x}", self.chain_id);
        let signature = format!("0x{}", hex::encode(signature.as_bytes()));
        let query = [
            ("wallet", wallet.as_str()),
            ("chain", chain.as_str()),
            ("nonce", self.message.as_str()),
            ("signature", signature.as_str()),
        ];
        tracing::debug!(url, wallet, chain, "hosted node login");
        let mut full =
            reqwest::Url::parse(&url).map_err(|e| failed(format!("not a URL: {e}"), false))?;
        full.query_pairs_mut().extend_pairs(query);
        let resp = self
            .http
            .get(full)
            .send()
            .await
            // The URL carries the signature: never in an error.
            .map_err(|e| {
                let transient = e.is_connect() || e.is_timeout() || e.is_request();
                failed(super::transport::error_chain(&e.without_url()), transient)
            })?;
        let status = resp.status();
        let body = tokio::time::timeout(self.timeout, resp.bytes())
            .await
            .map_err(|_| failed("the answer did not arrive in time".into(), true))?
            .map_err(|e| failed(super::transport::error_chain(&e.without_url()), true))?;
        if !status.is_success() {
            // An error answer holds no JWT; a short excerpt says why.
            let text = String::from_utf8_lossy(&body[..body.len().min(200)])
                .trim()
                .to_string();
            return Err(failed(
                format!("HTTP {}: {text}", status.as_u16()),
                status.is_server_error(),
            ));
        }
        let answer: Value = serde_json::from_slice(&body)
            .map_err(|e| failed(format!("the answer is not JSON ({e})"), false))?;
        let now = unix_now();
        state.generation += 1;
        let mut grants = HashMap::new();
        for entry in entries(&answer) {
            if let Some((token, grant)) = self.grant_from(entry, now, state.generation) {
                grants.insert(token, grant);
            }
        }
        tracing::debug!(tokens = grants.len(), "hosted node login done");
        state.by_token = grants;
        Ok(())
    }

    /// One entry of the login answer: its token (from the entry or the JWT's payload) and
    /// grant; `None` for an entry without `jwt`/`endpoint` or of another contract.
    fn grant_from(&self, entry: &Value, now: u64, generation: u64) -> Option<(u64, Grant)> {
        let jwt = entry.get("jwt")?.as_str()?.to_string();
        let endpoint = entry.get("endpoint")?.as_str()?.to_string();
        let claims = jwt_claims(&jwt);
        let contract = claims
            .as_ref()
            .and_then(|c| c.get("tokenSmartContract"))
            .or_else(|| entry.get("tokenSmartContract"))
            .and_then(Value::as_str);
        if contract.is_some_and(|c| c.trim().to_lowercase() != self.contract) {
            return None;
        }
        let token = ["tokenId", "token_id", "id"]
            .iter()
            .find_map(|k| entry.get(*k).and_then(as_u64))
            .or_else(|| claims.as_ref()?.get("tokenId").and_then(as_u64))?;
        let expires = claims.as_ref().and_then(|c| c.get("exp")).and_then(as_u64);
        Some((
            token,
            Grant {
                endpoint,
                jwt,
                expires,
                obtained: now,
                generation,
            },
        ))
    }
}

/// The per-token objects of a login answer: the answer itself if it is an array, or the
/// first array member of an object (`{"nfts": [...]}`), searched one level deep.
fn entries(answer: &Value) -> Vec<&Value> {
    match answer {
        Value::Array(items) => items.iter().collect(),
        Value::Object(map) => map
            .values()
            .find_map(|v| match v {
                Value::Array(items) => Some(items.iter().collect()),
                Value::Object(_) => {
                    let inner = entries(v);
                    (!inner.is_empty()).then_some(inner)
                }
                _ => None,
            })
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The JWT's payload, read without verifying the signature (only `exp` and the token are
/// taken from it, to know when to renew and which sNFT it is for).
fn jwt_claims(jwt: &str) -> Option<Value> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(payload: &str) -> String {
        let b = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!("{}.{}.sig", b.encode("{}"), b.encode(payload))
    }

    #[test]
    fn expiry_and_token_are_read_from_the_payload() {
        let c = jwt_claims(&jwt(r#"{"tokenId":"7","exp":1700000000}"#)).unwrap();
        assert_eq!(c.get("tokenId").and_then(as_u64), Some(7));
        assert_eq!(c.get("exp").and_then(as_u64), Some(1_700_000_000));
        assert!(jwt_claims("not-a-jwt").is_none());
    }

    #[test]
    fn a_grant_is_renewed_before_it_expires() {
        let g = |obtained, expires| Grant {
            endpoint: String::new(),
            jwt: String::new(),
            expires: Some(expires),
            obtained,
            generation: 1,
        };
        // One hour: renewed in its last minute.
        assert!(g(0, 3600).fresh(3500));
        assert!(!g(0, 3600).fresh(3541));
        // Four seconds: renewed in its last second.
        assert!(g(0, 4).fresh(2));
        assert!(!g(0, 4).fresh(3));
    }

    #[test]
    fn entries_are_found_in_an_array_or_an_object() {
        let a: Value = serde_json::json!([{"jwt": "x"}]);
        assert_eq!(entries(&a).len(), 1);
        let o: Value = serde_json::json!({"wallet": "0x1", "nfts": [{"jwt": "x"}, {"jwt": "y"}]});
        assert_eq!(entries(&o).len(), 2);
        let d: Value = serde_json::json!({"data": {"nfts": [{"jwt": "x"}]}});
        assert_eq!(entries(&d).len(), 1);
    }
}
