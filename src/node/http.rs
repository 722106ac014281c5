//! The HTTP surface: the Kubo/BTFS RPC subset under both `/api/v0` (Kubo) and `/api/v1`
//! (BTFS), POST only, plus the GET gateway paths. Query arguments are parsed here with Kubo's
//! rules (repeated `arg`, bare flags mean true, Go durations).

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Multipart, Query, State};
use axum::http::request::Parts;
use axum::routing::{get, post};
use serde::Serialize;

use super::error::ApiError;
use super::{NodeState, add, blocks, cat, gateway, gc, names, pins, put, routing};

pub fn router(node: NodeState) -> Router {
    let rpc = Router::new()
        .route("/add", post(add::add))
        .route("/cat", post(cat::cat))
        .route("/block/get", post(cat::block_get))
        .route("/block/stat", post(cat::block_stat))
        .route("/block/put", post(put::block_put))
        .route("/routing/get", post(routing::get))
        .route("/routing/put", post(routing::put))
        .route("/pin/add", post(pins::pin_add))
        .route("/pin/rm", post(pins::pin_rm))
        .route("/pin/ls", post(pins::pin_ls))
        .route("/key/gen", post(names::key_gen))
        .route("/key/list", post(names::key_list))
        .route("/name/publish", post(names::publish))
        .route("/name/resolve", post(names::resolve))
        .route("/version", post(version))
        .route("/repo/stat", post(repo_stat))
        .route("/repo/gc", post(gc::repo_gc))
        // Kubo answers GET on the RPC with 405 so browsers cannot trigger calls.
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed });
    Router::new()
        .nest("/api/v0", rpc.clone())
        .nest("/api/v1", rpc)
        .route("/ipfs/{*path}", get(gateway::ipfs))
        .route("/btfs/{*path}", get(gateway::ipfs))
        .route("/ipns/{*path}", get(gateway::ipns))
        .route("/btns/{*path}", get(gateway::ipns))
        // Adds stream files of any size; the importer never holds a whole file.
        .layer(DefaultBodyLimit::disable())
        .with_state(node)
}

/// The query arguments of an RPC call.
pub struct Args(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Args {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(pairs) = Query::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_argument(e.body_text()))?;
        Ok(Args(pairs))
    }
}

impl Args {
    #[cfg(test)]
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        Args(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`, in order (Kubo repeats `arg`).
    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of `key`, which must be present and non-empty.
    pub fn required(&self, key: &str) -> Result<&str, ApiError> {
        match self.get(key) {
            Some(value) if !value.is_empty() => Ok(value),
            _ => Err(ApiError::bad_argument(format!(
                "argument \"{key}\" is required"
            ))),
        }
    }

    /// A boolean flag; a bare `?flag` means true, as in Kubo.
    pub fn bool(&self, key: &str, default: bool) -> Result<bool, ApiError> {
        match self.get(key) {
            None => Ok(default),
            Some("" | "true" | "1") => Ok(true),
            Some("false" | "0") => Ok(false),
            Some(other) => Err(ApiError::bad_argument(format!(
                "could not parse \"{other}\" as bool for option \"{key}\""
            ))),
        }
    }

    pub fn u64(&self, key: &str) -> Result<Option<u64>, ApiError> {
        self.get(key)
            .map(|value| {
                value.parse().map_err(|_| {
                    ApiError::bad_argument(format!(
                        "could not parse \"{value}\" as a non-negative integer for option \"{key}\""
                    ))
                })
            })
            .transpose()
    }

    pub fn duration(&self, key: &str) -> Result<Option<Duration>, ApiError> {
        self.get(key)
            .map(|value| {
                parse_go_duration(value).ok_or_else(|| {
                    ApiError::bad_argument(format!(
                        "could not parse \"{value}\" as a duration for option \"{key}\""
                    ))
                })
            })
            .transpose()
    }
}

/// The one multipart part a call carries (`block/put`'s block, `routing/put`'s record);
/// `what` names it in the error when there is none.
pub async fn single_part(
    multipart: Result<Multipart, MultipartRejection>,
    what: &str,
) -> Result<bytes::Bytes, ApiError> {
    let mut multipart = multipart.map_err(|e| ApiError::bad_argument(e.body_text()))?;
    let field = multipart
        .next_field()
        .await
        .map_err(|e| ApiError::bad_argument(e.body_text()))?
        .ok_or_else(|| ApiError::bad_argument(format!("no {what} in the request")))?;
    field
        .bytes()
        .await
        .map_err(|e| ApiError::bad_argument(e.body_text()))
}

/// Parses Go's `time.ParseDuration` syntax (`24h`, `1h30m`, `1.5s`, `300ms`), without sign.
pub fn parse_go_duration(text: &str) -> Option<Duration> {
    if text == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = text;
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * seconds_per_unit;
    }
    Duration::try_from_secs_f64(total).ok()
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct VersionInfo {
    version: String,
    commit: String,
    repo: String,
    system: String,
    golang: String,
}

/// Kubo's repo version field; ours counts the layout in `repo`.
const REPO_VERSION: &str = "1";

async fn version() -> Json<VersionInfo> {
    Json(VersionInfo {
        version: concat!("pxfs-node/", env!("CARGO_PKG_VERSION")).to_owned(),
        commit: String::new(),
        repo: REPO_VERSION.to_owned(),
        system: format!("{}/{}", std::env::consts::ARCH, std::env::consts::OS),
        golang: "none (rust-ipfs)".to_owned(),
    })
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct RepoStat {
    repo_size: u64,
    storage_max: u64,
    num_objects: u64,
    repo_path: String,
    version: String,
}

/// What the block store holds now (blocks written by the importer included) and the
/// `StorageMax` of `REPO/config`.
async fn repo_stat(State(node): State<NodeState>) -> Result<Json<RepoStat>, ApiError> {
    let store = blocks::store_dir(&node.repo);
    let (num_objects, repo_size) = tokio::task::spawn_blocking(move || gc::measure(&store))
        .await
        .map_err(ApiError::failed)?
        .map_err(ApiError::failed)?;
    Ok(Json(RepoStat {
        repo_size,
        storage_max: node.gc.limits().storage_max,
        num_objects,
        repo_path: node.repo.display().to_string(),
        version: format!("fs-repo@{REPO_VERSION}"),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse_like_go() {
        assert_eq!(parse_go_duration("24h"), Some(Duration::from_secs(86400)));
        assert_eq!(parse_go_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration("300ms"), Some(Duration::from_millis(300)));
        assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_go_duration("10"), None);
        assert_eq!(parse_go_duration("h"), None);
        assert_eq!(parse_go_duration(""), None);
    }

    #[test]
    fn bare_flags_are_true_and_garbage_is_a_bad_argument() {
        let args = Args::from_pairs(&[("pin", ""), ("raw-leaves", "false"), ("x", "maybe")]);
        assert!(args.bool("pin", false).unwrap());
        assert!(!args.bool("raw-leaves", true).unwrap());
        assert!(args.bool("absent", true).unwrap());
        assert!(matches!(
            args.bool("x", true),
            Err(ApiError::BadArgument(_))
        ));
    }
}
