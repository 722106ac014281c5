//! A `multipart/form-data` body read as parts, each part's bytes handed on as the slices of
//! the body's own frames they arrived in.
//!
//! multer (the parser behind axum's `Multipart`) copies the body into a buffer of its own, a
//! new one per request that grows as the request's bytes arrive: for a mount's adds (a
//! request of a megabyte or so of chunks, hundreds of requests per GiB) that buffer was fresh
//! memory every time, and the node took some 40 times the page faults per GiB it took for one
//! direct `add` of a large file, plus a copy of every byte. Here only the little that can
//! straddle two frames (a delimiter's first bytes, a part's headers) is ever copied.
//!
//! RFC 7578 over RFC 2046 §5.1.1: an optional preamble, then parts each opened by a
//! delimiter line (`--boundary`, optional spaces or tabs, CRLF) and headers up to an empty
//! line; the data ends at CRLF `--boundary`, and the last delimiter is followed by `--`.

use axum::body::Body;
use axum::http::HeaderMap;
use axum::http::header::CONTENT_TYPE;
use bytes::{Buf, Bytes, BytesMut};
use futures::StreamExt;
use memchr::memmem;

/// The most a part's header block may hold.
const MAX_HEADERS: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum PartsError {
    #[error("not a multipart/form-data request: {0}")]
    NotMultipart(String),
    #[error("reading the request body failed: {0}")]
    Body(String),
    #[error("the multipart body ends before its closing delimiter")]
    Incomplete,
    #[error("malformed multipart body: {0}")]
    Malformed(&'static str),
}

/// One part's headers: what the parts' reader needs of them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PartHead {
    /// `name` of its Content-Disposition.
    pub name: Option<String>,
    /// `filename` of its Content-Disposition.
    pub file_name: Option<String>,
    /// Its Content-Type's media type (lowercase, without parameters).
    pub content_type: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Before the first delimiter.
    Preamble,
    /// Just after a delimiter (the preamble or a part's data ended there): the close
    /// marker, or padding and the line's end, then headers.
    Headers,
    /// In a part's data.
    Data,
    /// After the close delimiter.
    Done,
}

/// The parts of one request body.
pub struct Parts {
    body: futures::stream::BoxStream<'static, Result<Bytes, PartsError>>,
    /// CRLF `--boundary`: what ends a part's data.
    delimiter: Vec<u8>,
    /// Body bytes not taken yet.
    buf: Bytes,
    /// The body has no more frames.
    eof: bool,
    stage: Stage,
}

/// The parts of a `multipart/form-data` request.
pub fn parts(headers: &HeaderMap, body: Body) -> Result<Parts, PartsError> {
    let content_type = headers
        .get(CONTENT_TYPE)
        .ok_or_else(|| PartsError::NotMultipart("the request has no Content-Type".into()))?
        .to_str()
        .map_err(|_| PartsError::NotMultipart("its Content-Type is not text".into()))?;
    let boundary = boundary(content_type)?;
    let body = body
        .into_data_stream()
        .map(|frame| frame.map_err(|e| PartsError::Body(e.to_string())));
    Ok(Parts::new(&boundary, body.boxed()))
}

/// The boundary a `multipart/form-data` Content-Type names.
fn boundary(content_type: &str) -> Result<String, PartsError> {
    let (media, params) = split_media_type(content_type);
    if !media.eq_ignore_ascii_case("multipart/form-data") {
        return Err(PartsError::NotMultipart(format!(
            "its Content-Type is {media:?}"
        )));
    }
    let boundary = params
        .into_iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("boundary"))
        .map(|(_, v)| v)
        .ok_or_else(|| PartsError::NotMultipart("its Content-Type names no boundary".into()))?;
    // RFC 2046: 1 to 70 characters.
    if boundary.is_empty() || boundary.len() > 70 {
        return Err(PartsError::NotMultipart(format!(
            "its boundary {boundary:?} is not 1 to 70 characters"
        )));
    }
    Ok(boundary)
}

impl Parts {
    fn new(
        boundary: &str,
        body: futures::stream::BoxStream<'static, Result<Bytes, PartsError>>,
    ) -> Parts {
        let mut delimiter = b"\r\n--".to_vec();
        delimiter.extend_from_slice(boundary.as_bytes());
        Parts {
            body,
            delimiter,
            // The first delimiter may open the body: read it as if a line ended before it.
            buf: Bytes::from_static(b"\r\n"),
            eof: false,
            stage: Stage::Preamble,
        }
    }

    /// The next part's headers (what is left of the current part's data is skipped);
    /// `None` after the last part.
    pub async fn next_part(&mut self) -> Result<Option<PartHead>, PartsError> {
        loop {
            match self.stage {
                Stage::Preamble | Stage::Data => while self.chunk().await?.is_some() {},
                Stage::Headers => return self.headers().await,
                Stage::Done => return Ok(None),
            }
        }
    }

    /// The next bytes of the current part's data; `None` at its end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, PartsError> {
        if !matches!(self.stage, Stage::Data | Stage::Preamble) {
            return Ok(None);
        }
        let d = self.delimiter.len();
        loop {
            if let Some(at) = memmem::find(&self.buf, &self.delimiter) {
                let data = self.buf.split_to(at);
                self.buf.advance(d);
                return Ok(self.last_data(data));
            }
            // All but what could be the start of a delimiter is data.
            let keep = self.buf.len().min(d - 1);
            if self.buf.len() > keep {
                let data = self.buf.split_to(self.buf.len() - keep);
                if let Some(data) = self.data(data) {
                    return Ok(Some(data));
                }
            }
            let Some(frame) = self.frame().await? else {
                return Err(PartsError::Incomplete);
            };
            if frame.len() < d {
                self.buf = join(&self.buf, &frame);
                continue;
            }
            // Whether a delimiter starts in what is kept shows in the kept bytes and the
            // frame's first ones; if none does, the kept bytes are data and the frame's
            // bytes are searched as they are.
            let window = join(&self.buf, &frame[..d - 1]);
            match memmem::find(&window, &self.delimiter) {
                Some(at) if at < self.buf.len() => {
                    let kept = self.buf.len();
                    let data = self.buf.split_to(at);
                    self.buf = frame.slice(at + d - kept..);
                    return Ok(self.last_data(data));
                }
                _ => {
                    let data = std::mem::replace(&mut self.buf, frame);
                    if let Some(data) = self.data(data) {
                        return Ok(Some(data));
                    }
                }
            }
        }
    }

    /// `data` as a piece of the current part (the preamble's bytes are dropped).
    fn data(&self, data: Bytes) -> Option<Bytes> {
        match self.stage {
            Stage::Data if !data.is_empty() => Some(data),
            _ => None,
        }
    }

    /// [`Parts::data`] for the bytes just before a delimiter: the preamble or the part
    /// ends there.
    fn last_data(&mut self, data: Bytes) -> Option<Bytes> {
        let data = self.data(data);
        self.stage = Stage::Headers;
        data
    }

    /// Reads what follows a delimiter: the close marker (`None`, and the parts are done),
    /// or the rest of the delimiter's line and a part's header block.
    async fn headers(&mut self) -> Result<Option<PartHead>, PartsError> {
        // What the block began with in frames used up: copied (a block across frames).
        let mut head = BytesMut::new();
        loop {
            let parsed = if head.is_empty() {
                parse_after_delimiter(&self.buf)?
            } else {
                let more = self.buf.len().min(MAX_HEADERS);
                parse_after_delimiter(&join(&head, &self.buf[..more]))?
            };
            if let Some((taken, part)) = parsed {
                // Past the end of `head`: the block ends in `buf`.
                self.buf.advance(taken - head.len());
                self.stage = match part {
                    None => Stage::Done,
                    Some(_) => Stage::Data,
                };
                return Ok(part);
            }
            if head.len() + self.buf.len() >= MAX_HEADERS {
                return Err(PartsError::Malformed("a part's headers are too long"));
            }
            head.extend_from_slice(&self.buf);
            self.buf = self.frame().await?.ok_or(PartsError::Incomplete)?;
        }
    }

    /// The body's next non-empty frame; `None` at its end.
    async fn frame(&mut self) -> Result<Option<Bytes>, PartsError> {
        while !self.eof {
            match self.body.next().await {
                Some(Ok(frame)) if frame.is_empty() => {}
                Some(Ok(frame)) => return Ok(Some(frame)),
                Some(Err(e)) => return Err(e),
                None => self.eof = true,
            }
        }
        Ok(None)
    }
}

/// `a` then `b`, copied into one buffer.
fn join(a: &[u8], b: &[u8]) -> Bytes {
    let mut joined = BytesMut::with_capacity(a.len() + b.len());
    joined.extend_from_slice(a);
    joined.extend_from_slice(b);
    joined.freeze()
}

/// What follows a delimiter, when `head` holds all of it: how many bytes it takes, and the
/// part's headers (`None`: the close delimiter, `--`). `Ok(None)`: more bytes are needed.
type AfterDelimiter = Option<(usize, Option<PartHead>)>;

fn parse_after_delimiter(head: &[u8]) -> Result<AfterDelimiter, PartsError> {
    if head.len() < 2 {
        return Ok(None);
    }
    if head.starts_with(b"--") {
        return Ok(Some((2, None)));
    }
    let Some(line_end) = memmem::find(head, b"\r\n") else {
        return Ok(None);
    };
    if !head[..line_end].iter().all(|&b| b == b' ' || b == b'\t') {
        return Err(PartsError::Malformed("text after a delimiter on its line"));
    }
    let block = &head[line_end + 2..];
    let block_len = if block.starts_with(b"\r\n") {
        2
    } else {
        match memmem::find(block, b"\r\n\r\n") {
            Some(at) => at + 4,
            None => return Ok(None),
        }
    };
    let part = parse_headers(&block[..block_len])?;
    Ok(Some((line_end + 2 + block_len, Some(part))))
}

/// A part's header lines (each `Name: value`, CRLF-ended).
fn parse_headers(block: &[u8]) -> Result<PartHead, PartsError> {
    let text = std::str::from_utf8(block)
        .map_err(|_| PartsError::Malformed("a part's headers are not UTF-8"))?;
    let mut part = PartHead::default();
    for line in text.split("\r\n").filter(|l| !l.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or(PartsError::Malformed("a part's header line has no colon"))?;
        let value = value.trim();
        if name.trim().eq_ignore_ascii_case("content-disposition") {
            let (_, params) = split_media_type(value);
            for (k, v) in params {
                if k.eq_ignore_ascii_case("name") {
                    part.name = Some(v);
                } else if k.eq_ignore_ascii_case("filename") {
                    part.file_name = Some(v);
                }
            }
        } else if name.trim().eq_ignore_ascii_case("content-type") {
            let (media, _) = split_media_type(value);
            part.content_type = Some(media.to_ascii_lowercase());
        }
    }
    Ok(part)
}

/// `type; key=value; key="quoted \" value"` as the type and its parameters.
fn split_media_type(value: &str) -> (&str, Vec<(String, String)>) {
    let (media, mut rest) = value.split_once(';').unwrap_or((value, ""));
    let mut params = Vec::new();
    loop {
        rest = rest.trim_start_matches([' ', '\t', ';']);
        if rest.is_empty() {
            break;
        }
        let Some(eq) = rest.find('=') else { break };
        let key = rest[..eq].trim().to_owned();
        rest = rest[eq + 1..].trim_start();
        let mut val = String::new();
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            val.push(escaped);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => val.push(c),
                }
            }
            rest = &quoted[end.min(quoted.len())..];
        } else {
            let end = rest.find(';').unwrap_or(rest.len());
            val = rest[..end].trim().to_owned();
            rest = &rest[end..];
        }
        params.push((key, val));
    }
    (media.trim(), params)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// A body of `contents` as parts, with `boundary`.
    fn body(boundary: &str, contents: &[Vec<u8>]) -> Vec<u8> {
        let mut raw = b"preamble, ignored\r\n".to_vec();
        for (i, content) in contents.iter().enumerate() {
            raw.extend_from_slice(
                format!(
                    "--{boundary}  \r\nContent-Disposition: form-data; name=\"file\"; \
                     filename=\"f{i} \\\"q\\\"\"\r\nContent-Type: Application/Octet-Stream\r\n\r\n"
                )
                .as_bytes(),
            );
            raw.extend_from_slice(content);
            raw.extend_from_slice(b"\r\n");
        }
        raw.extend_from_slice(format!("--{boundary}--\r\nepilogue").as_bytes());
        raw
    }

    /// `raw` cut into frames of random sizes (some a byte, some empty).
    fn frames(raw: &[u8], rng: &mut rand::rngs::StdRng) -> Vec<Bytes> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < raw.len() {
            let n = match rng.random_range(0..4) {
                0 => rng.random_range(0..3),
                1 => rng.random_range(0..80),
                _ => rng.random_range(0..200_000),
            };
            let n = n.min(raw.len() - at);
            out.push(Bytes::copy_from_slice(&raw[at..at + n]));
            at += n;
        }
        out
    }

    fn reader(boundary: &str, frames: Vec<Bytes>) -> Parts {
        let stream = futures::stream::iter(frames.into_iter().map(Ok));
        Parts::new(boundary, stream.boxed())
    }

    async fn read_all(parts: &mut Parts) -> Result<Vec<(PartHead, Vec<u8>)>, PartsError> {
        let mut got = Vec::new();
        while let Some(head) = parts.next_part().await? {
            let mut bytes = Vec::new();
            while let Some(piece) = parts.chunk().await? {
                bytes.extend_from_slice(&piece);
            }
            got.push((head, bytes));
        }
        Ok(got)
    }

    /// Contents that hold the delimiter's pieces: CR LF, `--`, the boundary cut short.
    fn tricky_contents(boundary: &str, rng: &mut rand::rngs::StdRng) -> Vec<Vec<u8>> {
        let near = format!("\r\n--{}", &boundary[..boundary.len() - 1]);
        (0..rng.random_range(1..6))
            .map(|_| {
                let mut c = Vec::new();
                for _ in 0..rng.random_range(0..40) {
                    match rng.random_range(0..5) {
                        0 => c.extend_from_slice(near.as_bytes()),
                        1 => c.extend_from_slice(b"\r\n-"),
                        2 => c.extend_from_slice(b"\r\n\r\n"),
                        _ => c.extend((0..rng.random_range(0..70_000)).map(|_| rng.random::<u8>())),
                    }
                }
                // A sender picks a boundary its contents do not hold.
                let delimiter = format!("\r\n--{boundary}");
                while let Some(at) = memmem::find(&c, delimiter.as_bytes()) {
                    c.remove(at);
                }
                c
            })
            .collect()
    }

    #[tokio::test]
    async fn parts_come_whole_however_the_body_is_cut_into_frames() {
        for seed in 0..60 {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let boundary = format!("b{seed}oUnDaRy-{}", rng.random::<u32>());
            let contents = tricky_contents(&boundary, &mut rng);
            let raw = body(&boundary, &contents);
            let mut parts = reader(&boundary, frames(&raw, &mut rng));
            let got = read_all(&mut parts)
                .await
                .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            assert_eq!(got.len(), contents.len(), "seed {seed}");
            for (i, ((head, bytes), want)) in got.iter().zip(&contents).enumerate() {
                assert!(bytes == want, "seed {seed}: part {i} differs");
                assert_eq!(head.name.as_deref(), Some("file"));
                assert_eq!(head.file_name, Some(format!("f{i} \"q\"")));
                assert_eq!(
                    head.content_type.as_deref(),
                    Some("application/octet-stream")
                );
            }
        }
    }

    #[tokio::test]
    async fn a_part_whose_data_is_not_read_is_skipped() {
        let contents = vec![vec![1u8; 300_000], vec![2u8; 10], Vec::new()];
        let raw = body("xyz", &contents);
        let mut parts = reader("xyz", vec![Bytes::from(raw)]);
        assert!(parts.next_part().await.unwrap().is_some());
        assert!(parts.next_part().await.unwrap().is_some());
        assert_eq!(parts.chunk().await.unwrap().unwrap(), vec![2u8; 10]);
        assert!(parts.next_part().await.unwrap().is_some());
        assert_eq!(parts.chunk().await.unwrap(), None);
        assert_eq!(parts.next_part().await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_body_cut_short_is_an_error_not_an_end() {
        let raw = body("xyz", &[vec![5u8; 1000]]);
        for cut in [0, 10, 30, 120, 600, raw.len() - 20] {
            let mut parts = reader("xyz", vec![Bytes::copy_from_slice(&raw[..cut])]);
            let r = read_all(&mut parts).await;
            assert!(
                matches!(r, Err(PartsError::Incomplete)),
                "cut at {cut}: {r:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_part_without_headers_and_an_empty_body_of_parts_read_as_such() {
        let raw = b"--q\r\n\r\nbare\r\n--q--".to_vec();
        let mut parts = reader("q", vec![Bytes::from(raw)]);
        let got = read_all(&mut parts).await.unwrap();
        assert_eq!(got, vec![(PartHead::default(), b"bare".to_vec())]);
        let mut parts = reader("q", vec![Bytes::from_static(b"--q--\r\n")]);
        assert_eq!(read_all(&mut parts).await.unwrap(), vec![]);
    }

    #[test]
    fn the_boundary_comes_from_a_form_data_content_type_only() {
        assert_eq!(
            boundary("multipart/form-data; boundary=abc").unwrap(),
            "abc"
        );
        assert_eq!(
            boundary("Multipart/Form-Data;Boundary=\"a b;c\"").unwrap(),
            "a b;c"
        );
        for bad in [
            "application/json",
            "multipart/form-data",
            "multipart/form-data; boundary=",
            "multipart/form-data; boundary=\"\"",
        ] {
            assert!(boundary(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_body_that_is_not_multipart_is_refused_with_the_reason() {
        let mut headers = HeaderMap::new();
        let e = parts(&headers, Body::empty()).err().unwrap();
        assert!(e.to_string().contains("Content-Type"), "{e}");
        headers.insert(CONTENT_TYPE, "application/json".parse().unwrap());
        assert!(parts(&headers, Body::empty()).is_err());
    }
}
