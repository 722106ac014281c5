//! Named keys and IPNS (BTNS) names.
//!
//! Both live in plain files under the repo rather than in rust-ipfs's keychain and datastore:
//! the keychain is encrypted and not reachable without naming `connexa` types, and rust-ipfs's
//! own `publish` fixes the lifetime at 48 h and does not bump the sequence number when the
//! value is unchanged. Records are still real signed IPNS records (rust-ipns), so any IPNS
//! implementation can verify them.
//!
//! - `keys/<name>.key`: a libp2p keypair (protobuf encoding), mode 0600. `self` is the node's
//!   identity.
//! - `names/<ipns-name>.ipns`: the latest record published under that name.
//! - `names/<ipns-name>.checked`: present once a publication of that name named the record
//!   it replaced (`pxfs-replaces`, `crate::storage::publish`); from then on every
//!   publication of the name must, so a writer whose publication was checked knows no other
//!   writer overwrote it unseen (docs/FORMAT.md §9.3).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::RwLock;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use ipld_core::cid::Cid;
use ipld_core::cid::multibase::Base;
use rust_ipfs::{Keypair, PeerId};
use serde::Serialize;

use super::error::ApiError;
use super::http::Args;
use super::{NodeState, repo};

/// The multicodec of a libp2p public key, the codec of an IPNS name as a CID.
const LIBP2P_KEY_CODEC: u64 = 0x72;
/// The name of the node's own key, as in Kubo.
pub const SELF_KEY: &str = "self";
/// Kubo's default record lifetime.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);
/// Kubo's default record TTL (a caching hint for resolvers).
const DEFAULT_TTL: Duration = Duration::from_secs(60 * 60);

#[derive(Debug, thiserror::Error)]
pub enum NameError {
    #[error("key name {0:?} is not valid: use letters, digits, '.', '_' or '-', at most 64")]
    InvalidKeyName(String),
    #[error("key with name '{0}' already exists")]
    KeyExists(String),
    #[error("no key named {0}")]
    NoSuchKey(String),
    #[error("unsupported key type {0:?}: only ed25519 is supported")]
    UnsupportedKeyType(String),
    #[error("{0:?} is not a valid IPNS name")]
    InvalidName(String),
    #[error("{0:?} is not a valid path to publish")]
    InvalidValue(String),
    #[error("could not resolve name {0:?}: routing: not found")]
    NotFound(String),
    #[error("the record for {name} is not valid: {reason}")]
    BadRecord { name: String, reason: String },
    #[error("cannot sign the record: {0}")]
    Sign(String),
    #[error("key file {path} is damaged: {reason}")]
    DamagedKey { path: PathBuf, reason: String },
    /// A checked publication (docs/FORMAT.md §9.3) named a record the name no longer holds.
    #[error("{}", crate::storage::moved_message(current.as_deref()))]
    Moved { current: Option<String> },
    #[error(
        "{0} takes only publications that name the record they replace ({arg}): its writers check what they replace",
        arg = crate::storage::REPLACES_ARG
    )]
    CheckRequired(String),
    #[error("{0}")]
    Io(#[from] repo::RepoError),
}

impl From<NameError> for ApiError {
    fn from(e: NameError) -> Self {
        match e {
            NameError::InvalidKeyName(_)
            | NameError::UnsupportedKeyType(_)
            | NameError::InvalidName(_)
            | NameError::InvalidValue(_) => ApiError::bad_argument(e.to_string()),
            _ => ApiError::failed(e),
        }
    }
}

/// The IPNS name of a key, as Kubo prints it: a CIDv1 (libp2p-key codec) in base36, `k51…`.
pub fn ipns_name(peer: &PeerId) -> String {
    let cid = Cid::new_v1(LIBP2P_KEY_CODEC, *peer.as_ref());
    // Only CIDv0 refuses other bases; a v1 CID always encodes.
    cid.to_string_of_base(Base::Base36Lower)
        .unwrap_or_else(|_| peer.to_string())
}

/// Accepts the forms Kubo accepts for a name: `k51…` (or any multibase CIDv1 with the
/// libp2p-key codec) and a base58 peer id `12D3…`/`Qm…`.
pub fn parse_ipns_name(name: &str) -> Result<PeerId, NameError> {
    let invalid = || NameError::InvalidName(name.to_owned());
    if let Ok(cid) = Cid::try_from(name)
        && cid.codec() == LIBP2P_KEY_CODEC
    {
        return PeerId::from_multihash(*cid.hash()).map_err(|_| invalid());
    }
    PeerId::from_str(name).map_err(|_| invalid())
}

/// The node's named keys, loaded once at start and kept in memory (there are few).
pub struct Keys {
    dir: PathBuf,
    keys: RwLock<BTreeMap<String, Keypair>>,
}

impl Keys {
    /// Loads every key under `dir`, generating `self` on first start.
    pub fn load(dir: &Path) -> Result<Self, NameError> {
        repo::create_private_dir(dir)?;
        let mut keys = BTreeMap::new();
        for (name, bytes) in repo::read_dir_files(dir, "key")? {
            let keypair =
                Keypair::from_protobuf_encoding(&bytes).map_err(|e| NameError::DamagedKey {
                    path: dir.join(format!("{name}.key")),
                    reason: e.to_string(),
                })?;
            keys.insert(name, keypair);
        }
        let keys = Keys {
            dir: dir.to_owned(),
            keys: RwLock::new(keys),
        };
        if keys.get(SELF_KEY).is_none() {
            keys.store(SELF_KEY, Keypair::generate_ed25519())?;
        }
        Ok(keys)
    }

    pub fn get(&self, name: &str) -> Option<Keypair> {
        self.read().get(name).cloned()
    }

    /// Finds a key by its name or by its IPNS name / peer id, as Kubo's `--key` does.
    pub fn find(&self, name_or_id: &str) -> Option<(String, Keypair)> {
        if let Some(key) = self.get(name_or_id) {
            return Some((name_or_id.to_owned(), key));
        }
        let peer = parse_ipns_name(name_or_id).ok()?;
        self.read()
            .iter()
            .find(|(_, key)| key.public().to_peer_id() == peer)
            .map(|(name, key)| (name.clone(), key.clone()))
    }

    /// Generates and stores a new key; refuses names that exist.
    pub fn generate(&self, name: &str, kind: &str) -> Result<Keypair, NameError> {
        if !is_valid_key_name(name) {
            return Err(NameError::InvalidKeyName(name.to_owned()));
        }
        if kind != "ed25519" {
            return Err(NameError::UnsupportedKeyType(kind.to_owned()));
        }
        if self.get(name).is_some() {
            return Err(NameError::KeyExists(name.to_owned()));
        }
        let keypair = Keypair::generate_ed25519();
        self.store(name, keypair.clone())?;
        Ok(keypair)
    }

    /// All keys, `self` first and the rest by name (Kubo's order).
    pub fn list(&self) -> Vec<(String, Keypair)> {
        let keys = self.read();
        let own = keys.get_key_value(SELF_KEY);
        own.into_iter()
            .chain(keys.iter().filter(|(name, _)| name.as_str() != SELF_KEY))
            .map(|(name, key)| (name.clone(), key.clone()))
            .collect()
    }

    fn store(&self, name: &str, keypair: Keypair) -> Result<(), NameError> {
        let bytes = keypair
            .to_protobuf_encoding()
            .map_err(|e| NameError::Sign(e.to_string()))?;
        let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
        if keys.contains_key(name) {
            return Err(NameError::KeyExists(name.to_owned()));
        }
        repo::write_private_file(&self.dir.join(format!("{name}.key")), &bytes)?;
        keys.insert(name.to_owned(), keypair);
        Ok(())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Keypair>> {
        // A panic while holding the lock cannot leave the map half-updated: inserts are single calls.
        self.keys.read().unwrap_or_else(|p| p.into_inner())
    }
}

fn is_valid_key_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The latest signed record of each name this node published.
pub struct Names {
    dir: PathBuf,
    /// Publishes read the previous sequence number and write the next one; one at a time keeps
    /// the numbers strictly increasing. Publishing is rare next to adds and reads.
    publish_lock: tokio::sync::Mutex<()>,
}

impl Names {
    pub fn open(dir: &Path) -> Result<Self, NameError> {
        repo::create_private_dir(dir)?;
        Ok(Names {
            dir: dir.to_owned(),
            publish_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// Signs `value` under `keypair` with the next sequence number and stores the record.
    /// With `replaces` (a checked publication: the value the name must hold now, `None`
    /// for no record), only if the name holds exactly that; the name then takes only
    /// checked publications. Returns the IPNS name.
    pub async fn publish(
        &self,
        keypair: &Keypair,
        value: &str,
        lifetime: Duration,
        ttl: Duration,
        replaces: Option<Option<&str>>,
    ) -> Result<String, NameError> {
        let peer = keypair.public().to_peer_id();
        let name = ipns_name(&peer);
        let _guard = self.publish_lock.lock().await;
        let previous = self
            .load(&name)
            .await?
            .filter(|p| p.verify_signature(peer).is_ok());
        let checked = self.checked_path(&name);
        match replaces {
            Some(expected) => {
                let current = previous
                    .as_ref()
                    .and_then(|p| p.data().ok())
                    .map(|d| String::from_utf8_lossy(d.value()).into_owned());
                if current.as_deref() != expected {
                    return Err(NameError::Moved { current });
                }
                if repo::read_optional(&checked).await?.is_none() {
                    repo::write_file_atomically(&checked, b"").await?;
                }
            }
            None if repo::read_optional(&checked).await?.is_some() => {
                return Err(NameError::CheckRequired(name));
            }
            None => {}
        }
        // An expired or otherwise stale previous record still counts for the sequence.
        let sequence = previous.map_or(0, |p| p.sequence() + 1);
        let lifetime = chrono::Duration::from_std(lifetime)
            .map_err(|_| NameError::Sign("lifetime is too long".to_owned()))?;
        let record = rust_ipns::Record::new(
            keypair,
            value.as_bytes(),
            chrono::Utc::now() + lifetime,
            sequence,
            ttl,
        )
        .map_err(|e| NameError::Sign(e.to_string()))?;
        let bytes = record
            .encode()
            .map_err(|e| NameError::Sign(e.to_string()))?;
        repo::write_file_atomically(&self.record_path(&name), &bytes).await?;
        tracing::debug!(%name, %value, sequence, "published name");
        Ok(name)
    }

    /// The value (`/ipfs/…`) of the newest valid record of `name`.
    pub async fn resolve(&self, name: &str) -> Result<String, NameError> {
        let peer = parse_ipns_name(name)?;
        let canonical = ipns_name(&peer);
        let record = self
            .load(&canonical)
            .await?
            .ok_or_else(|| NameError::NotFound(format!("/ipns/{name}")))?;
        let bad = |reason: String| NameError::BadRecord {
            name: canonical.clone(),
            reason,
        };
        // The signature, not the record's end of validity (Kubo's 24 h): this node keeps
        // only the newest record it was given (`publish`, `put_record`), so an expired one is
        // still the name's last word, and a tree not committed for a day must still resolve
        // (a restore from this node, docs/keeping-data-safe.md).
        record
            .verify_signature(peer)
            .map_err(|e| bad(e.to_string()))?;
        if record.verify(peer).is_err() {
            tracing::debug!(name = %canonical, "resolving a record past its validity");
        }
        let data = record.data().map_err(|e| bad(e.to_string()))?;
        String::from_utf8(data.value().to_vec()).map_err(|e| bad(e.to_string()))
    }

    /// The stored signed record of `name`, as bytes (`routing/get`).
    pub async fn record(&self, name: &str) -> Result<Vec<u8>, NameError> {
        let canonical = ipns_name(&parse_ipns_name(name)?);
        repo::read_optional(&self.record_path(&canonical))
            .await?
            .ok_or_else(|| NameError::NotFound(format!("/ipns/{name}")))
    }

    /// Stores a record signed elsewhere (`routing/put`: a replica keeping the name of a
    /// tree it holds). Taken only when its signature is the name's and it is not older
    /// than the record held.
    pub async fn put_record(&self, name: &str, bytes: &[u8]) -> Result<(), NameError> {
        let peer = parse_ipns_name(name)?;
        let canonical = ipns_name(&peer);
        let bad = |reason: String| NameError::BadRecord {
            name: canonical.clone(),
            reason,
        };
        let record = rust_ipns::Record::decode(bytes).map_err(|e| bad(e.to_string()))?;
        // Signed by the name's key; one past its validity is taken too (see `resolve`).
        record
            .verify_signature(peer)
            .map_err(|e| bad(e.to_string()))?;
        let _guard = self.publish_lock.lock().await;
        if let Some(held) = self.load(&canonical).await?
            && held.verify_signature(peer).is_ok()
            && held.sequence() > record.sequence()
        {
            return Err(bad(format!(
                "sequence {} is older than the {} held",
                record.sequence(),
                held.sequence()
            )));
        }
        repo::write_file_atomically(&self.record_path(&canonical), bytes).await?;
        Ok(())
    }

    async fn load(&self, name: &str) -> Result<Option<rust_ipns::Record>, NameError> {
        let Some(bytes) = repo::read_optional(&self.record_path(name)).await? else {
            return Ok(None);
        };
        rust_ipns::Record::decode(bytes)
            .map(Some)
            .map_err(|e| NameError::BadRecord {
                name: name.to_owned(),
                reason: e.to_string(),
            })
    }

    fn record_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.ipns"))
    }

    fn checked_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.checked"))
    }
}

/// What a publish may point at: `/ipfs/CID[/path]` (also given as `/btfs/…` or a bare CID) or
/// another name `/ipns/NAME[/path]`. Stored in the `/ipfs/` form, as Kubo stores it.
fn normalize_value(value: &str) -> Result<String, NameError> {
    let invalid = || NameError::InvalidValue(value.to_owned());
    let (namespace, rest) = match value.strip_prefix('/') {
        Some(path) => path.split_once('/').ok_or_else(invalid)?,
        None => ("ipfs", value),
    };
    let namespace = match namespace {
        "ipfs" | "btfs" => "ipfs",
        "ipns" | "btns" => "ipns",
        _ => return Err(invalid()),
    };
    let root = rest.split('/').next().unwrap_or_default();
    let valid_root = match namespace {
        "ipfs" => Cid::try_from(root).is_ok(),
        _ => parse_ipns_name(root).is_ok(),
    };
    if !valid_root {
        return Err(invalid());
    }
    Ok(format!("/{namespace}/{}", rest.trim_end_matches('/')))
}

/// Strips `/ipns/` or `/btns/` from a name argument.
pub fn strip_name_prefix(arg: &str) -> &str {
    ["/ipns/", "/btns/"]
        .iter()
        .find_map(|prefix| arg.strip_prefix(prefix))
        .unwrap_or(arg)
}

/// Resolves `NAME[/path]` to `/ipfs/CID[/path]`, following names that point at names (Kubo
/// follows up to 32 levels).
pub async fn resolve_path(names: &Names, path: &str) -> Result<String, NameError> {
    let mut current = path.trim_start_matches('/').to_owned();
    for _ in 0..32 {
        let (name, rest) = current.split_once('/').unwrap_or((current.as_str(), ""));
        let value = names.resolve(name).await?;
        let joined = if rest.is_empty() {
            value
        } else {
            format!("{}/{rest}", value.trim_end_matches('/'))
        };
        match joined.strip_prefix("/ipns/") {
            Some(next) => current = next.to_owned(),
            None => return Ok(joined),
        }
    }
    Err(NameError::NotFound(format!(
        "/ipns/{path}: too many levels of names"
    )))
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyInfo {
    name: String,
    id: String,
}

impl KeyInfo {
    fn new(name: String, keypair: &Keypair) -> Self {
        KeyInfo {
            name,
            id: ipns_name(&keypair.public().to_peer_id()),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyList {
    keys: Vec<KeyInfo>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Published {
    name: String,
    value: String,
    /// The publication named the record it replaced and the node compared it.
    pxfs_checked: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Resolved {
    path: String,
}

/// `key/gen?arg=NAME&type=ed25519`
pub async fn key_gen(State(node): State<NodeState>, args: Args) -> Result<Json<KeyInfo>, ApiError> {
    let name = args.required("arg")?;
    let kind = args.get("type").unwrap_or("ed25519");
    let keypair = node.keys.generate(name, kind)?;
    Ok(Json(KeyInfo::new(name.to_owned(), &keypair)))
}

/// `key/list`
pub async fn key_list(State(node): State<NodeState>) -> Json<KeyList> {
    let keys = node
        .keys
        .list()
        .into_iter()
        .map(|(name, key)| KeyInfo::new(name, &key))
        .collect();
    Json(KeyList { keys })
}

/// `name/publish?arg=/ipfs/CID&key=NAME&lifetime=24h&ttl=1h&allow-offline=true[&pxfs-replaces=/ipfs/OLD]`
pub async fn publish(
    State(node): State<NodeState>,
    args: Args,
) -> Result<Json<Published>, ApiError> {
    let value = normalize_value(args.required("arg")?)?;
    let key_name = args.get("key").unwrap_or(SELF_KEY);
    let lifetime = args.duration("lifetime")?.unwrap_or(DEFAULT_LIFETIME);
    let ttl = args.duration("ttl")?.unwrap_or(DEFAULT_TTL);
    // Accepted for Kubo compatibility: this node always publishes to its own store.
    args.bool("allow-offline", true)?;
    // A checked publication (docs/FORMAT.md §9.3): empty names no record.
    let replaces = match args.get(crate::storage::REPLACES_ARG) {
        None => None,
        Some("") => Some(None),
        Some(v) => Some(Some(normalize_value(v)?)),
    };
    let (_, keypair) = node
        .keys
        .find(key_name)
        .ok_or_else(|| NameError::NoSuchKey(key_name.to_owned()))?;
    let name = node
        .names
        .publish(
            &keypair,
            &value,
            lifetime,
            ttl,
            replaces.as_ref().map(Option::as_deref),
        )
        .await?;
    Ok(Json(Published {
        name,
        value,
        pxfs_checked: replaces.is_some(),
    }))
}

/// `name/resolve?arg=/ipns/NAME`
pub async fn resolve(
    State(node): State<NodeState>,
    args: Args,
) -> Result<Json<Resolved>, ApiError> {
    let arg = args.required("arg")?;
    let path = resolve_path(&node.names, strip_name_prefix(arg)).await?;
    Ok(Json(Resolved { path }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipns_name_of_an_ed25519_key_is_base36_k51() {
        let peer = Keypair::generate_ed25519().public().to_peer_id();
        let name = ipns_name(&peer);
        assert!(name.starts_with("k51"), "{name}");
        assert_eq!(parse_ipns_name(&name).unwrap(), peer);
        assert_eq!(parse_ipns_name(&peer.to_string()).unwrap(), peer);
    }

    #[test]
    fn publish_values_are_normalized_to_ipfs_paths() {
        let cid = "bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am";
        assert_eq!(normalize_value(cid).unwrap(), format!("/ipfs/{cid}"));
        assert_eq!(
            normalize_value(&format!("/btfs/{cid}/a/")).unwrap(),
            format!("/ipfs/{cid}/a")
        );
        assert!(normalize_value("/ipfs/not-a-cid").is_err());
        assert!(normalize_value("/foo/bar").is_err());
    }

    /// A tree not committed for longer than a record's lifetime still resolves (a restore
    /// from this node), and a replica takes such a record from the primary.
    #[tokio::test]
    async fn a_record_past_its_validity_still_resolves_and_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let primary = Names::open(&dir.path().join("a")).unwrap();
        let key = Keypair::generate_ed25519();
        let cid = "bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am";
        // `publish` stores the value as the HTTP handler normalized it.
        let value = normalize_value(cid).unwrap();
        let name = primary
            .publish(
                &key,
                &value,
                Duration::from_millis(1),
                Duration::from_secs(1),
                None,
            )
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            primary.resolve(&name).await.unwrap(),
            format!("/ipfs/{cid}")
        );
        let replica = Names::open(&dir.path().join("b")).unwrap();
        let record = primary.record(&name).await.unwrap();
        replica.put_record(&name, &record).await.unwrap();
        assert_eq!(
            replica.resolve(&name).await.unwrap(),
            format!("/ipfs/{cid}")
        );
        // A record signed by another key is still refused.
        let other = Names::open(&dir.path().join("c")).unwrap();
        let forged = other
            .publish(
                &Keypair::generate_ed25519(),
                cid,
                Duration::from_secs(60),
                Duration::from_secs(1),
                None,
            )
            .await
            .unwrap();
        let forged = other.record(&forged).await.unwrap();
        assert!(replica.put_record(&name, &forged).await.is_err());
    }

    /// A checked publication replaces only the record it names; once one was made, an
    /// unchecked one (a writer that would not see what it overwrites) is refused; a
    /// refused one changes nothing.
    #[tokio::test]
    async fn a_checked_publication_replaces_only_the_record_it_names() {
        let dir = tempfile::tempdir().unwrap();
        let names = Names::open(dir.path()).unwrap();
        let key = Keypair::generate_ed25519();
        let a =
            normalize_value("bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am").unwrap();
        let b =
            normalize_value("bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4").unwrap();
        async fn publish(
            names: &Names,
            key: &Keypair,
            value: &str,
            replaces: Option<Option<&str>>,
        ) -> Result<String, NameError> {
            let (life, ttl) = (Duration::from_secs(60), Duration::from_secs(1));
            names.publish(key, value, life, ttl, replaces).await
        }
        let moved = |r: Result<String, NameError>| match r {
            Err(NameError::Moved { current }) => current,
            other => panic!("expected a refusal, got {other:?}"),
        };
        // The first publication names no record; naming one that is not there is refused.
        assert_eq!(moved(publish(&names, &key, &a, Some(Some(&b))).await), None);
        let name = publish(&names, &key, &a, Some(None)).await.unwrap();
        // A second writer that resolved nothing (or an older record) is refused.
        assert_eq!(
            moved(publish(&names, &key, &b, Some(None)).await),
            Some(a.clone())
        );
        assert_eq!(
            moved(publish(&names, &key, &b, Some(Some(&b))).await),
            Some(a.clone())
        );
        // Unchecked publications are refused from now on.
        assert!(matches!(
            publish(&names, &key, &b, None).await,
            Err(NameError::CheckRequired(_))
        ));
        assert_eq!(names.resolve(&name).await.unwrap(), a);
        publish(&names, &key, &b, Some(Some(&a))).await.unwrap();
        assert_eq!(names.resolve(&name).await.unwrap(), b);
        // Also after a restart of the node.
        let reopened = Names::open(dir.path()).unwrap();
        assert!(matches!(
            publish(&reopened, &key, &a, None).await,
            Err(NameError::CheckRequired(_))
        ));
        // A name never published checked takes unchecked publications (Kubo's behaviour).
        let other = Keypair::generate_ed25519();
        for v in [&a, &b] {
            publish(&names, &other, v, None).await.unwrap();
        }
    }

    #[test]
    fn key_names_must_be_plain() {
        assert!(is_valid_key_name("token-17"));
        assert!(!is_valid_key_name("../etc"));
        assert!(!is_valid_key_name(""));
        assert!(!is_valid_key_name(".hidden"));
    }
}
