//! One HTTP POST to the node, with the timeout and retry policy: connection errors,
//! timeouts and 5xx answers without a Kubo error body are retried with exponential backoff;
//! 4xx answers and Kubo error bodies are the node's definite answer and are not. Retrying
//! stops once a request has been failing for the whole timeout, so a call the node does not
//! answer fails within about two timeouts, however many retries are configured.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use reqwest::multipart::Form;
use tokio::time::Instant;
use tracing::debug;

use super::auth::HostedLogin;
use super::error::StorageError;
use super::responses::KuboError;

/// First retry waits this long; each further one doubles it, up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Error bodies are read only this far: a proxy's HTML page is not worth more.
const MAX_ERROR_BODY: usize = 4096;

/// How long the node may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Deadline {
    /// The whole exchange (request and answer) within the timeout: small JSON calls.
    Total,
    /// Only silence is bounded: uploads and streamed downloads may take as long as they
    /// keep moving.
    Idle,
}

/// Upload progress, shared between the request body stream and the watchdog that turns a
/// stalled upload into a timeout. Also carries a local read error out of the body stream,
/// so that a failing disk is reported as such and not retried as if the node were down.
#[derive(Clone)]
pub(crate) struct Progress {
    start: Instant,
    last_ms: Arc<AtomicU64>,
    local_error: Arc<Mutex<Option<StorageError>>>,
}

impl Progress {
    pub fn new() -> Progress {
        Progress {
            start: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
            local_error: Arc::new(Mutex::new(None)),
        }
    }

    pub fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }

    pub fn fail(&self, error: StorageError) {
        if let Ok(mut slot) = self.local_error.lock() {
            slot.get_or_insert(error);
        }
    }

    fn local_error(&self) -> Option<StorageError> {
        self.local_error.lock().ok().and_then(|slot| slot.clone())
    }
}

/// A request body, rebuilt for every attempt (a streamed file cannot be replayed).
pub(crate) struct Upload {
    pub form: Form,
    pub progress: Progress,
}

/// Where requests go and how they are authorised.
pub(crate) enum Access {
    /// To `base`, with the client's default headers (a static bearer token, or none).
    Fixed,
    /// PollinationX's hosted nodes: to the sNFT's endpoint with its JWT, both from the
    /// login; `None` until the client is bound to an sNFT ([`super::NodeClient::for_token`]).
    Hosted {
        login: Arc<HostedLogin>,
        token: Option<u64>,
    },
}

/// What one attempt uses: base URL and, on a hosted node, the JWT and its login's number.
pub(crate) struct Credentials {
    base: String,
    bearer: Option<String>,
    generation: u64,
}

pub(crate) struct Transport {
    pub http: reqwest::Client,
    /// `http://host:port/api/v0`, no trailing slash (hosted: unused, the login says).
    pub base: String,
    /// `/api/v0`, for error messages.
    pub prefix: String,
    pub timeout: Duration,
    pub retries: u32,
    pub access: Access,
    /// Whether the node checks publications (`storage::publish`), asked once.
    pub checks_publish: tokio::sync::OnceCell<bool>,
}

impl Transport {
    /// The credentials for the next attempt (hosted: logging in when the grant is missing
    /// or about to expire).
    async fn credentials(&self) -> Result<Credentials, StorageError> {
        match &self.access {
            Access::Fixed => Ok(Credentials {
                base: self.base.clone(),
                bearer: None,
                generation: 0,
            }),
            Access::Hosted { login, token } => {
                let token = token.ok_or_else(|| {
                    StorageError::Config(
                        "a hosted node is reached through one sNFT's login: no sNFT chosen".into(),
                    )
                })?;
                let grant = login.grant(token).await?;
                Ok(Credentials {
                    base: grant.endpoint.trim().trim_end_matches('/').to_string(),
                    bearer: Some(grant.jwt().to_string()),
                    generation: grant.generation,
                })
            }
        }
    }

    fn hosted(&self) -> bool {
        matches!(self.access, Access::Hosted { .. })
    }

    pub fn path(&self, cmd: &str) -> String {
        format!("{}/{}", self.prefix, cmd)
    }

    /// POSTs `cmd` and reads the whole answer, retrying the whole exchange when worthwhile.
    pub async fn call(
        &self,
        cmd: &str,
        query: &[(&str, &str)],
        deadline: Deadline,
        upload: Option<&(dyn Fn() -> Result<Upload, StorageError> + Send + Sync)>,
    ) -> Result<Bytes, StorageError> {
        self.with_retries(cmd, |creds| async move {
            let body = upload.map(|make| make()).transpose()?;
            let resp = self.send(&creds, cmd, query, deadline, body).await?;
            self.read_all(&creds, cmd, resp, deadline).await
        })
        .await
    }

    /// POSTs `cmd` and returns the answer once its headers arrived with a success status;
    /// only that part is retried, the body is the caller's to stream.
    pub async fn open(
        &self,
        cmd: &str,
        query: &[(&str, &str)],
    ) -> Result<reqwest::Response, StorageError> {
        self.with_retries(cmd, |creds| async move {
            self.send(&creds, cmd, query, Deadline::Idle, None).await
        })
        .await
    }

    async fn with_retries<T, F, Fut>(&self, cmd: &str, mut attempt: F) -> Result<T, StorageError>
    where
        F: FnMut(Credentials) -> Fut,
        Fut: Future<Output = Result<T, StorageError>>,
    {
        let started = Instant::now();
        let mut tries = 0u32;
        let mut renewed = false;
        loop {
            let outcome = match self.credentials().await {
                Ok(creds) => {
                    let generation = creds.generation;
                    attempt(creds).await.map_err(|e| (e, generation))
                }
                Err(e) => Err((e, 0)),
            };
            crate::metrics::node_request(cmd);
            match outcome {
                Ok(v) => return Ok(v),
                // A hosted node refused the JWT (expired early, revoked): log in again
                // and try once more; a second refusal is the node's answer.
                Err((StorageError::Node { status: 401, .. }, generation))
                    if !renewed
                        && let Access::Hosted {
                            login,
                            token: Some(token),
                        } = &self.access =>
                {
                    renewed = true;
                    crate::metrics::node_failed(cmd, true);
                    debug!(cmd, token, "hosted node refused the JWT, logging in again");
                    login.renew(*token, generation).await?;
                }
                // Retries are for failures that come quickly (refused, reset, a proxy's
                // 503). Once a whole timeout has gone by, the node is hung or gone: trying
                // again would only multiply the wait of a reader that should get `EIO`.
                // The uploader and committer retry on their own, for as long as it takes.
                Err((e, _))
                    if e.is_transient()
                        && tries < self.retries
                        && started.elapsed() < self.timeout =>
                {
                    let wait = backoff(tries);
                    tries += 1;
                    crate::metrics::node_failed(cmd, true);
                    // Debug only: an outage is reported once by whoever keeps retrying.
                    debug!(cmd, error = %e, retry = tries, of = self.retries, ?wait, "node request failed, retrying");
                    tokio::time::sleep(wait).await;
                }
                Err((e, _)) => {
                    crate::metrics::node_failed(cmd, false);
                    return Err(e);
                }
            }
        }
    }

    async fn send(
        &self,
        creds: &Credentials,
        cmd: &str,
        query: &[(&str, &str)],
        deadline: Deadline,
        upload: Option<Upload>,
    ) -> Result<reqwest::Response, StorageError> {
        let url = format!("{}/{}", creds.base, cmd);
        debug!(%url, ?query, "node request");
        let mut full = reqwest::Url::parse(&url)
            .map_err(|e| StorageError::Config(format!("node URL {url:?}: {e}")))?;
        if !query.is_empty() {
            full.query_pairs_mut().extend_pairs(query);
        }
        let mut req = self.http.post(full);
        if let Some(jwt) = &creds.bearer {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {jwt}"))
                .map_err(|_| {
                    StorageError::Config("the login gave a JWT with invalid characters".into())
                })?;
            value.set_sensitive(true);
            req = req.header(reqwest::header::AUTHORIZATION, value);
        }
        if deadline == Deadline::Total {
            req = req.timeout(self.timeout);
        }
        let (sent, progress) = match upload {
            Some(u) => (req.multipart(u.form).send(), Some(u.progress)),
            None => (req.send(), None),
        };
        let result = match &progress {
            // The node answers after it has the whole body: bound the silence, not the
            // length of the upload.
            Some(p) => self.watch(sent, p).await,
            None if deadline == Deadline::Idle => {
                match tokio::time::timeout(self.timeout, sent).await {
                    Ok(r) => r.map_err(Failure::from),
                    Err(_) => Err(Failure::Silent),
                }
            }
            None => sent.await.map_err(Failure::from),
        };
        let resp = match result {
            Ok(resp) => resp,
            Err(e) => {
                if let Some(local) = progress.as_ref().and_then(Progress::local_error) {
                    return Err(local);
                }
                return Err(self.map_error(cmd, &url, e));
            }
        };
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = self.read_error_body(resp).await;
        let status = status.as_u16();
        // A gateway that does not pass a call answers 404/405/501 without a node error.
        if self.hosted() && matches!(status, 404 | 405 | 501) && KuboError::parse(&body).is_none() {
            return Err(StorageError::Unsupported {
                path: self.path(cmd),
                status,
            });
        }
        Err(classify_failure(&self.path(cmd), status, &body))
    }

    async fn watch(
        &self,
        sent: impl Future<Output = Result<reqwest::Response, reqwest::Error>>,
        progress: &Progress,
    ) -> Result<reqwest::Response, Failure> {
        let tick = (self.timeout / 4).max(Duration::from_millis(10));
        let mut sent = std::pin::pin!(sent);
        loop {
            tokio::select! {
                r = &mut sent => return r.map_err(Failure::from),
                _ = tokio::time::sleep(tick) => {
                    if progress.idle_for() >= self.timeout {
                        return Err(Failure::Silent);
                    }
                }
            }
        }
    }

    fn map_error(&self, cmd: &str, url: &str, e: Failure) -> StorageError {
        let e = match e {
            Failure::Silent => {
                return StorageError::Timeout {
                    path: self.path(cmd),
                    after: self.timeout,
                };
            }
            Failure::Http(e) => e,
        };
        if e.is_timeout() {
            return StorageError::Timeout {
                path: self.path(cmd),
                after: self.timeout,
            };
        }
        if e.is_builder() {
            return StorageError::Config(error_chain(&e));
        }
        StorageError::Unreachable {
            url: url.to_string(),
            detail: error_chain(&e),
        }
    }

    async fn read_all(
        &self,
        creds: &Credentials,
        cmd: &str,
        resp: reqwest::Response,
        deadline: Deadline,
    ) -> Result<Bytes, StorageError> {
        let read = resp.bytes();
        let result = match deadline {
            // reqwest carries the request's total timeout into the body.
            Deadline::Total => read.await,
            Deadline::Idle => match tokio::time::timeout(self.timeout, read).await {
                Ok(r) => r,
                Err(_) => {
                    return Err(StorageError::Timeout {
                        path: self.path(cmd),
                        after: self.timeout,
                    });
                }
            },
        };
        result.map_err(|e| self.map_error(cmd, &format!("{}/{}", creds.base, cmd), e.into()))
    }

    async fn read_error_body(&self, resp: reqwest::Response) -> Vec<u8> {
        let mut body = Vec::new();
        let mut stream = resp.bytes_stream();
        let read = async {
            while let Some(Ok(chunk)) = stream.next().await {
                body.extend_from_slice(&chunk);
                if body.len() >= MAX_ERROR_BODY {
                    break;
                }
            }
        };
        // An error body that never finishes is still an error; what arrived is enough.
        let _ = tokio::time::timeout(self.timeout, read).await;
        body
    }
}

/// Why an exchange did not produce an answer.
enum Failure {
    Http(reqwest::Error),
    /// Nothing moved for the whole timeout (our own watchdog, not reqwest's).
    Silent,
}

impl From<reqwest::Error> for Failure {
    fn from(e: reqwest::Error) -> Failure {
        Failure::Http(e)
    }
}

/// Turns a non-2xx answer into the error the caller sees: a Kubo error body or a 4xx is the
/// node's answer (`Node`), anything else in the 5xx range may pass (`Unavailable`).
pub(crate) fn classify_failure(path: &str, status: u16, body: &[u8]) -> StorageError {
    if let Some(kubo) = KuboError::parse(body) {
        return StorageError::Node {
            path: path.to_string(),
            status,
            message: kubo.message,
        };
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX_ERROR_BODY)])
        .trim()
        .to_string();
    let message = if text.is_empty() {
        reqwest::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("no message")
            .to_string()
    } else {
        text
    };
    let path = path.to_string();
    if status >= 500 {
        StorageError::Unavailable {
            path,
            status,
            message,
        }
    } else {
        StorageError::Node {
            path,
            status,
            message,
        }
    }
}

pub(crate) fn backoff(retry: u32) -> Duration {
    let exp = FIRST_BACKOFF.saturating_mul(1u32 << retry.min(16));
    let capped = exp.min(MAX_BACKOFF);
    // Jitter keeps several clients that lost the node together from hammering it in step.
    let jitter = rand::random_range(0.75..1.25);
    capped.mul_f64(jitter)
}

pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !out.contains(&s_text) {
            out.push_str(": ");
            out.push_str(&s_text);
        }
        source = s.source();
    }
    out
}
