//! Streamed `cat` that picks up where it broke off: when the connection drops or goes
//! silent mid-file, the rest is asked for again from the first byte not yet delivered, up
//! to the client's retry count.

use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use tracing::warn;

use super::error::StorageError;
use super::transport::{self, Transport};

pub(crate) fn query<'a>(
    cid: &'a str,
    offset: &'a str,
    length: Option<&'a str>,
) -> Vec<(&'a str, &'a str)> {
    let mut query = vec![("arg", cid)];
    if offset != "0" {
        query.push(("offset", offset));
    }
    if let Some(length) = length {
        query.push(("length", length));
    }
    query
}

pub(crate) async fn stream(
    transport: Arc<Transport>,
    cid: &str,
    offset: u64,
    length: Option<u64>,
) -> Result<impl Stream<Item = Result<Bytes, StorageError>> + Send + 'static, StorageError> {
    let resumes_left = transport.retries;
    let mut state = Resuming {
        transport,
        cid: cid.to_string(),
        next: offset,
        remaining: length,
        body: None,
        resumes_left,
        resumed: 0,
    };
    if length != Some(0) {
        state.body = Some(state.request().await?);
    }
    Ok(futures::stream::try_unfold(state, |mut state| async move {
        Ok(state.next_chunk().await?.map(|chunk| (chunk, state)))
    }))
}

type Body = BoxStream<'static, reqwest::Result<Bytes>>;

struct Resuming {
    transport: Arc<Transport>,
    cid: String,
    /// Offset of the first byte not delivered yet.
    next: u64,
    /// Bytes still wanted, when a length was given.
    remaining: Option<u64>,
    body: Option<Body>,
    resumes_left: u32,
    resumed: u32,
}

impl Resuming {
    /// Asks for everything not delivered yet. Borrows only what it needs: the body stream
    /// in `self` is not `Sync`, so `&self` must not live across an await.
    fn request(&self) -> impl Future<Output = Result<Body, StorageError>> + Send + 'static {
        let transport = self.transport.clone();
        let cid = self.cid.clone();
        let offset = self.next.to_string();
        let length = self.remaining.map(|l| l.to_string());
        async move {
            let query = query(&cid, &offset, length.as_deref());
            let resp = transport.open("cat", &query).await?;
            Ok(resp.bytes_stream().boxed())
        }
    }

    async fn next_chunk(&mut self) -> Result<Option<Bytes>, StorageError> {
        loop {
            let Some(body) = self.body.as_mut() else {
                return Ok(None);
            };
            let failure = match next_piece(body, &self.transport).await {
                Ok(None) => {
                    self.body = None;
                    return Ok(None);
                }
                Ok(Some(chunk)) => {
                    let n = chunk.len() as u64;
                    self.next += n;
                    if let Some(r) = self.remaining.as_mut() {
                        *r = r.saturating_sub(n);
                    }
                    return Ok(Some(chunk));
                }
                Err(failure) => failure,
            };
            self.body = None;
            if self.resumes_left == 0 {
                return Err(failure);
            }
            self.resumes_left -= 1;
            let wait = transport::backoff(self.resumed);
            self.resumed += 1;
            warn!(cid = %self.cid, at = self.next, error = %failure, ?wait, "cat broke off, resuming");
            tokio::time::sleep(wait).await;
            self.body = Some(self.request().await?);
        }
    }
}

/// The objects `cids` one after another, as one streamed `cat` with an `arg` per object
/// (Kubo, BTFS and `pxfs node` take several paths). For a reader that splits the answer by
/// the lengths it knows and authenticates each piece: nothing here is resumed or checked,
/// and silence longer than the timeout ends the stream with an error.
pub(crate) async fn many(
    transport: Arc<Transport>,
    cids: &[&str],
) -> Result<BoxStream<'static, Result<Bytes, StorageError>>, StorageError> {
    let query: Vec<(&str, &str)> = cids.iter().map(|cid| ("arg", *cid)).collect();
    let body = transport.open("cat", &query).await?.bytes_stream().boxed();
    Ok(futures::stream::try_unfold(body, move |mut body| {
        let transport = transport.clone();
        async move { Ok(next_piece(&mut body, &transport).await?.map(|p| (p, body))) }
    })
    .boxed())
}

/// The next piece of a `cat` answer (counted as downloaded); silence longer than the
/// timeout, or a broken transfer, is an error.
async fn next_piece(body: &mut Body, transport: &Transport) -> Result<Option<Bytes>, StorageError> {
    let idle = transport.timeout;
    match tokio::time::timeout(idle, body.next()).await {
        Ok(None) => Ok(None),
        Ok(Some(Ok(piece))) => {
            crate::metrics::downloaded(piece.len() as u64, 0);
            Ok(Some(piece))
        }
        Ok(Some(Err(e))) if !e.is_timeout() => Err(StorageError::Unreachable {
            url: transport.path("cat"),
            detail: transport::error_chain(&e),
        }),
        _ => Err(StorageError::Timeout {
            path: transport.path("cat"),
            after: idle,
        }),
    }
}
