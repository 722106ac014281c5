//! A client of the IPFS Pinning Service API (the public spec that IPFS Cluster and
//! commercial pinning services implement): `POST /pins` asks the service to pin a CID,
//! `GET /pins/{requestid}` follows the request's status, `DELETE /pins/{requestid}` removes
//! it. Every request carries the access token as a bearer token; errors come back as
//! `{"error":{"reason","details"}}` with an HTTP status.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// What the service answers about one pin request.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct PinStatus {
    pub requestid: String,
    pub status: Status,
    pub pin: Pin,
    #[serde(default)]
    pub created: String,
    #[serde(default)]
    pub delegates: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Queued,
    Pinning,
    Pinned,
    Failed,
}

/// The object of a pin request.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Pin {
    pub cid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub origins: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PinningError {
    /// The service refused the request (4xx): retrying the same request will not help
    /// until something changes (the token, the account's quota).
    #[error("{service} refused {what}: HTTP {status}: {reason}")]
    Refused {
        service: String,
        what: String,
        status: u16,
        reason: String,
    },
    /// The service could not be reached or failed (5xx, timeout): try again later.
    #[error("{service}: {what} failed: {message}")]
    Transient {
        service: String,
        what: String,
        message: String,
    },
}

impl PinningError {
    /// The request id is unknown to the service (already removed).
    pub fn is_not_found(&self) -> bool {
        matches!(self, PinningError::Refused { status: 404, .. })
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetails,
}

#[derive(Deserialize)]
struct ErrorDetails {
    reason: String,
    #[serde(default)]
    details: Option<String>,
}

pub struct PinningClient {
    name: String,
    endpoint: String,
    token: Zeroizing<String>,
    http: reqwest::Client,
}

impl std::fmt::Debug for PinningClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PinningClient")
            .field("name", &self.name)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl PinningClient {
    /// A client of the service at `endpoint` (its base URL), called `name` in messages.
    pub fn new(name: &str, endpoint: &str, token: Zeroizing<String>) -> PinningClient {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client with a timeout builds");
        PinningClient {
            name: name.to_string(),
            endpoint: endpoint.trim_end_matches('/').to_string(),
            token,
            http,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Ask the service to pin `pin` (`POST /pins`).
    pub async fn add(&self, pin: &Pin) -> Result<PinStatus, PinningError> {
        let what = format!("pinning {}", pin.cid);
        let request = self.http.post(self.url("/pins")).json(pin);
        self.send(request, &what).await
    }

    /// The request's status now (`GET /pins/{requestid}`).
    pub async fn status(&self, requestid: &str) -> Result<PinStatus, PinningError> {
        let what = format!("the status of pin request {requestid}");
        let request = self.http.get(self.url(&format!("/pins/{requestid}")));
        self.send(request, &what).await
    }

    /// Remove the pin request (`DELETE /pins/{requestid}`); one the service no longer
    /// knows counts as removed.
    pub async fn remove(&self, requestid: &str) -> Result<(), PinningError> {
        let what = format!("removing pin request {requestid}");
        let request = self.http.delete(self.url(&format!("/pins/{requestid}")));
        let response = self.respond(request, &what).await;
        match response {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.endpoint)
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<PinStatus, PinningError> {
        let body = self.respond(request, what).await?;
        serde_json::from_slice(&body).map_err(|e| PinningError::Transient {
            service: self.name.clone(),
            what: what.to_string(),
            message: format!("the answer is not a PinStatus: {e}"),
        })
    }

    async fn respond(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<bytes::Bytes, PinningError> {
        let transient = |message: String| PinningError::Transient {
            service: self.name.clone(),
            what: what.to_string(),
            message,
        };
        let response = request
            .bearer_auth(self.token.as_str())
            .send()
            .await
            .map_err(|e| transient(without_url(&e)))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| transient(without_url(&e)))?;
        if status.is_success() {
            return Ok(body);
        }
        let reason = match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(b) => match b.error.details {
                Some(d) => format!("{}: {d}", b.error.reason),
                None => b.error.reason,
            },
            Err(_) => String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
        };
        if status.is_client_error() && status.as_u16() != 429 {
            return Err(PinningError::Refused {
                service: self.name.clone(),
                what: what.to_string(),
                status: status.as_u16(),
                reason,
            });
        }
        Err(transient(format!("HTTP {}: {reason}", status.as_u16())))
    }
}

/// A transport error's text without its URL (which is not secret, but long).
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    match std::error::Error::source(e) {
        Some(source) => format!("{kind}: {source}"),
        None => kind.to_string(),
    }
}
