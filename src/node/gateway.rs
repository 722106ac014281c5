//! The read-only HTTP gateway: `GET /ipfs/CID[/path]`, `/btfs/…`, `/ipns/NAME[/path]`,
//! `/btns/…` answer with the file's bytes. The oracle and the Chainlink job fetch usage
//! documents this way. Single byte ranges are honoured (`206`); the content type comes from
//! the file extension, else from the first bytes.

use std::ops::Range;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header::{ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG, RANGE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::{StreamExt, TryStreamExt};

use super::NodeState;
use super::cat::{CatError, ContentPath, UnixfsFile};
use super::names::NameError;

/// `GET /ipfs/{path}` and `GET /btfs/{path}`.
pub async fn ipfs(
    State(node): State<NodeState>,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> Response {
    serve(node, format!("/ipfs/{path}"), &headers).await
}

/// `GET /ipns/{path}` and `GET /btns/{path}`.
pub async fn ipns(
    State(node): State<NodeState>,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> Response {
    serve(node, format!("/ipns/{path}"), &headers).await
}

async fn serve(node: NodeState, path: String, headers: &HeaderMap) -> Response {
    match try_serve(node, &path, headers).await {
        Ok(response) => response,
        Err(e) => {
            let status = match &e {
                CatError::InvalidPath(_) | CatError::Name(NameError::InvalidName(_)) => {
                    StatusCode::BAD_REQUEST
                }
                CatError::NotFound(_) | CatError::Name(NameError::NotFound(_)) => {
                    StatusCode::NOT_FOUND
                }
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            tracing::debug!(%path, error = %e, "gateway request failed");
            (status, format!("{path}: {e}\n")).into_response()
        }
    }
}

async fn try_serve(node: NodeState, path: &str, headers: &HeaderMap) -> Result<Response, CatError> {
    let content = ContentPath::resolve(&node, path).await?;
    let file = UnixfsFile::open(&node, &content).await?;
    let size = file.size();
    let etag = format!("\"{}\"", content.root);

    let range = match headers.get(RANGE).and_then(|v| v.to_str().ok()) {
        Some(spec) => match parse_range(spec, size) {
            RangeRequest::Satisfiable(range) => Some(range),
            RangeRequest::Unsatisfiable => {
                return Ok((
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    [(CONTENT_RANGE, format!("bytes */{size}"))],
                )
                    .into_response());
            }
            RangeRequest::Ignored => None,
        },
        None => None,
    };
    let served = range.clone().unwrap_or(0..size);

    let mut stream = Box::pin(file.read(node.clone(), served.clone()));
    let first = stream.try_next().await?;
    let content_type = type_by_extension(path)
        .map(str::to_owned)
        .or_else(|| (served.start == 0).then(|| sniff(first.as_deref().unwrap_or_default())))
        .unwrap_or_else(|| "application/octet-stream".to_owned());
    let body = Body::from_stream(futures::stream::iter(first.map(Ok)).chain(stream));

    let mut response = Response::builder()
        .header(CONTENT_TYPE, content_type)
        .header(CONTENT_LENGTH, served.end - served.start)
        .header(ACCEPT_RANGES, "bytes")
        .header(ETAG, etag);
    if range.is_some() {
        response = response.status(StatusCode::PARTIAL_CONTENT).header(
            CONTENT_RANGE,
            format!(
                "bytes {}-{}/{size}",
                served.start,
                served.end.saturating_sub(1)
            ),
        );
    }
    // Every header value above is ASCII built here, so building cannot fail.
    Ok(response
        .body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()))
}

#[derive(Debug, PartialEq)]
enum RangeRequest {
    Satisfiable(Range<u64>),
    Unsatisfiable,
    /// Malformed or multi-range: answered with the whole file, as RFC 9110 allows.
    Ignored,
}

/// Parses a single `bytes=` range against a file of `size` bytes.
fn parse_range(spec: &str, size: u64) -> RangeRequest {
    let Some(spec) = spec.trim().strip_prefix("bytes=") else {
        return RangeRequest::Ignored;
    };
    if spec.contains(',') {
        return RangeRequest::Ignored;
    }
    let Some((start, end)) = spec.split_once('-') else {
        return RangeRequest::Ignored;
    };
    let (start, end) = (start.trim(), end.trim());
    let range = if start.is_empty() {
        // `bytes=-N`: the last N bytes.
        match end.parse::<u64>() {
            Ok(0) => return RangeRequest::Unsatisfiable,
            Ok(suffix) => size.saturating_sub(suffix)..size,
            Err(_) => return RangeRequest::Ignored,
        }
    } else {
        let Ok(start) = start.parse::<u64>() else {
            return RangeRequest::Ignored;
        };
        let end = if end.is_empty() {
            size
        } else {
            match end.parse::<u64>() {
                Ok(last) if last >= start => last.saturating_add(1).min(size),
                _ => return RangeRequest::Ignored,
            }
        };
        if start >= size {
            return RangeRequest::Unsatisfiable;
        }
        start..end
    };
    RangeRequest::Satisfiable(range)
}

fn type_by_extension(path: &str) -> Option<&'static str> {
    let name = path.rsplit('/').next()?;
    let (_, ext) = name.rsplit_once('.')?;
    Some(match ext.to_ascii_lowercase().as_str() {
        "json" => "application/json",
        "html" | "htm" => "text/html; charset=utf-8",
        "txt" | "md" => "text/plain; charset=utf-8",
        "css" => "text/css",
        "js" => "text/javascript",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "svg" => "image/svg+xml",
        "pdf" => "application/pdf",
        _ => return None,
    })
}

/// Guesses a content type from the first bytes of a file.
fn sniff(head: &[u8]) -> String {
    const MAGIC: &[(&[u8], &str)] = &[
        (b"\x89PNG\r\n\x1a\n", "image/png"),
        (b"\xff\xd8\xff", "image/jpeg"),
        (b"GIF8", "image/gif"),
        (b"%PDF-", "application/pdf"),
    ];
    if let Some((_, kind)) = MAGIC.iter().find(|(magic, _)| head.starts_with(magic)) {
        return (*kind).to_owned();
    }
    // A chunk may end inside a multi-byte character; only an error before the end is binary.
    let text = match std::str::from_utf8(head) {
        Ok(text) => text,
        Err(e) if e.error_len().is_none() => {
            std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or_default()
        }
        Err(_) => return "application/octet-stream".to_owned(),
    };
    if text.contains('\0') {
        return "application/octet-stream".to_owned();
    }
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        "application/json".to_owned()
    } else if trimmed.len() >= 5 && trimmed[..5].eq_ignore_ascii_case("<html")
        || trimmed.starts_with("<!DOCTYPE html")
        || trimmed.starts_with("<!doctype html")
    {
        "text/html; charset=utf-8".to_owned()
    } else {
        "text/plain; charset=utf-8".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_ranges_follow_rfc_9110() {
        assert_eq!(
            parse_range("bytes=0-1", 10),
            RangeRequest::Satisfiable(0..2)
        );
        assert_eq!(
            parse_range("bytes=5-", 10),
            RangeRequest::Satisfiable(5..10)
        );
        assert_eq!(
            parse_range("bytes=-3", 10),
            RangeRequest::Satisfiable(7..10)
        );
        assert_eq!(
            parse_range("bytes=8-100", 10),
            RangeRequest::Satisfiable(8..10)
        );
        assert_eq!(parse_range("bytes=10-", 10), RangeRequest::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,4-5", 10), RangeRequest::Ignored);
        assert_eq!(parse_range("items=0-1", 10), RangeRequest::Ignored);
    }

    #[test]
    fn json_documents_are_served_as_json() {
        assert_eq!(
            sniff(b"  {\"schema\":\"pxfs/usage/1\"}"),
            "application/json"
        );
        assert_eq!(sniff(b"hello\n"), "text/plain; charset=utf-8");
        assert_eq!(sniff(b"\x00\x01\x02"), "application/octet-stream");
        assert_eq!(
            type_by_extension("/ipfs/x/usage.json"),
            Some("application/json")
        );
        assert_eq!(type_by_extension("/ipfs/bafy"), None);
    }
}
