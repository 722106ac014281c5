//! Login to PollinationX's hosted nodes (`[node] auth = "pollinationx"`): the wallet signs
//! the fixed login message (EIP-191 `personal_sign`), `POST <auth>/auth/v2/login` with the
//! signature in a JSON body (or, `login_method = "get"`, the query of a GET, as
//! PollinationX's dApp does: https only) answers with one JWT and one node endpoint per
//! sNFT of the wallet. The login goes only over https or to a loopback host, follows no
//! redirect, and its message may not contain the statement of the wallet-key typed data
//! nor the legacy key message (docs/FORMAT.md §6.4), so a login signature never opens a
//! data key. Grants are kept in memory
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
use crate::config::{LoginMethod, NodeConfig};

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
    method: LoginMethod,
    /// `Auto` found that the service takes only a GET.
    get_only: std::sync::atomic::AtomicBool,
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
        check_login_url(&auth_url, node.login_method)?;
        let message = node.login_message.clone().ok_or_else(|| {
            StorageError::Config(
                "[node] auth = \"pollinationx\" needs login_message (the message PollinationX's dApp has the wallet sign)".into(),
            )
        })?;
        check_login_message(&message)?;
        let timeout = Duration::from_secs(node.timeout_secs.max(1));
        let http = reqwest::Client::builder()
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .timeout(timeout)
            // A redirect could carry the signature to another host, or over plain http.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| StorageError::Config(super::transport::error_chain(&e)))?;
        Ok(HostedLogin {
            http,
            auth_url: auth_url.trim_end_matches('/').to_string(),
            method: node.login_method,
            get_only: std::sync::atomic::AtomicBool::new(false),
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
        let fields = [
            ("wallet", wallet.as_str()),
            ("chain", chain.as_str()),
            ("nonce", self.message.as_str()),
            ("signature", signature.as_str()),
        ];
        let https = url.starts_with("https://");
        let mut method = match self.method {
            LoginMethod::Auto if self.get_only.load(std::sync::atomic::Ordering::Relaxed) => {
                LoginMethod::Get
            }
            LoginMethod::Auto => LoginMethod::Post,
            m => m,
        };
        loop {
            let (status, body) = self.send(&url, method, &fields, &failed).await?;
            if self.method == LoginMethod::Auto
                && method == LoginMethod::Post
                && https
                && matches!(status.as_u16(), 404 | 405)
            {
                tracing::info!(
                    url,
                    "the login service takes no POST: logging in with a GET (https)"
                );
                self.get_only
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                method = LoginMethod::Get;
                continue;
            }
            return self.keep_grants(state, status, body, method, &failed);
        }
    }

    /// One login request; its status and body.
    async fn send(
        &self,
        url: &str,
        method: LoginMethod,
        fields: &[(&str, &str)],
        failed: &impl Fn(String, bool) -> StorageError,
    ) -> Result<(reqwest::StatusCode, bytes::Bytes), StorageError> {
        tracing::debug!(url, ?method, "hosted node login");
        let request = match method {
            LoginMethod::Auto | LoginMethod::Post => {
                let body: serde_json::Map<String, Value> = fields
                    .iter()
                    .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
                    .collect();
                self.http.post(url).json(&body)
            }
            LoginMethod::Get => {
                // PollinationX's dApp login (../shared/POLLINATIONX.md); https only, checked
                // in `new`.
                let mut full = reqwest::Url::parse(url)
                    .map_err(|e| failed(format!("not a URL: {e}"), false))?;
                full.query_pairs_mut().extend_pairs(fields.iter().copied());
                self.http.get(full)
            }
        };
        let resp = request
            .send()
            .await
            // The URL may carry the signature: never in an error.
            .map_err(|e| {
                let transient = e.is_connect() || e.is_timeout() || e.is_request();
                failed(super::transport::error_chain(&e.without_url()), transient)
            })?;
        let status = resp.status();
        let body = tokio::time::timeout(self.timeout, resp.bytes())
            .await
            .map_err(|_| failed("the answer did not arrive in time".into(), true))?
            .map_err(|e| failed(super::transport::error_chain(&e.without_url()), true))?;
        Ok((status, body))
    }

    /// The grants of a login's answer, kept in `state`.
    fn keep_grants(
        &self,
        state: &mut Grants,
        status: reqwest::StatusCode,
        body: bytes::Bytes,
        method: LoginMethod,
        failed: &impl Fn(String, bool) -> StorageError,
    ) -> Result<(), StorageError> {
        if !status.is_success() {
            // An error answer holds no JWT; a short excerpt says why.
            let text = String::from_utf8_lossy(&body[..body.len().min(200)])
                .trim()
                .to_string();
            let hint = match (method, status.as_u16()) {
                (LoginMethod::Auto | LoginMethod::Post, 404 | 405) => {
                    " (the login service does not take a POST; PollinationX's own takes a GET: \
                     set [node] login_method = \"get\", https only)"
                }
                (_, 300..=399) => {
                    " (pxfs follows no redirect of a login: set auth_url to the final address)"
                }
                _ => "",
            };
            return Err(failed(
                format!("HTTP {}: {text}{hint}", status.as_u16()),
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

/// The login carries a reusable signature: only over https, or plain http to a loopback
/// host (a stand-in on this machine); a GET (the signature in the URL) only over https.
fn check_login_url(auth_url: &str, method: LoginMethod) -> Result<(), StorageError> {
    let parsed = reqwest::Url::parse(auth_url)
        .map_err(|e| StorageError::Config(format!("auth_url {auth_url:?}: {e}")))?;
    match (parsed.scheme(), method) {
        ("https", _) => Ok(()),
        ("http", LoginMethod::Get) => Err(StorageError::Config(format!(
            "auth_url {auth_url:?}: login_method = \"get\" puts the login signature in the URL, so it is sent only over https"
        ))),
        ("http", LoginMethod::Auto | LoginMethod::Post) if is_loopback(&parsed) => Ok(()),
        ("http", LoginMethod::Auto | LoginMethod::Post) => Err(StorageError::Config(format!(
            "auth_url {auth_url:?}: the login signature is sent only over https (or plain http to a loopback host such as 127.0.0.1); use an https:// auth_url"
        ))),
        _ => Err(StorageError::Config(format!(
            "auth_url {auth_url:?}: only https (or http to a loopback host) is supported"
        ))),
    }
}

fn is_loopback(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A login message that a wallet-key signature could be confused with is refused: one
/// containing the statement of the wallet wrap's typed data, or the legacy key message's
/// opening words (whose EIP-191 signature opened legacy wallet wraps).
fn check_login_message(message: &str) -> Result<(), StorageError> {
    use crate::format::wrap::{LEGACY_MESSAGE_PREFIX, WALLET_STATEMENT};
    let lower = message.to_lowercase();
    if lower.contains(&WALLET_STATEMENT.to_lowercase())
        || lower.contains(&LEGACY_MESSAGE_PREFIX.to_lowercase())
    {
        return Err(StorageError::Config(
            "[node] login_message contains the text pxfs has the wallet sign for its data keys; a login signature must never unlock private files, so pxfs refuses to sign it as a login".into(),
        ));
    }
    Ok(())
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
    fn the_login_goes_only_over_https_or_to_loopback() {
        use LoginMethod::{Get, Post};
        for ok in [
            "https://auth.example",
            "https://10.1.2.3:8443/x",
            "http://127.0.0.1:9000",
            "http://127.8.9.10",
            "http://[::1]:9000",
            "http://localhost:9000",
            "http://LOCALHOST",
        ] {
            assert!(check_login_url(ok, Post).is_ok(), "{ok}");
        }
        for refused in [
            "http://auth.example",
            "http://10.0.0.1:9000",
            "http://[2001:db8::1]",
            "http://127.0.0.1.example.com",
            "http://localhost.example.com",
            "ftp://auth.example",
        ] {
            let err = check_login_url(refused, Post).unwrap_err().to_string();
            assert!(err.contains("https"), "{refused}: {err}");
        }
        // A GET puts the signature in the URL: https only, even to loopback.
        assert!(check_login_url("https://auth.example", Get).is_ok());
        let err = check_login_url("http://127.0.0.1:9000", Get)
            .unwrap_err()
            .to_string();
        assert!(err.contains("only over https"), "{err}");
    }

    #[test]
    fn a_login_message_never_holds_the_key_statement_or_the_legacy_key_message() {
        use crate::format::wrap::{WALLET_STATEMENT, wallet_message};
        assert!(check_login_message("Sign in to PollinationX").is_ok());
        let legacy = wallet_message(1, "0x5FbDB2315678afecb367f032d93F642f64180aa3", 1).unwrap();
        for refused in [
            WALLET_STATEMENT.to_string(),
            format!("Welcome!\n{WALLET_STATEMENT}\nnonce 1"),
            WALLET_STATEMENT.to_uppercase(),
            legacy.clone(),
            format!("login\n{legacy}"),
        ] {
            let err = check_login_message(&refused).unwrap_err().to_string();
            assert!(err.contains("never unlock private files"), "{err}");
        }
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
