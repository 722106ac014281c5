//! Who may use the dashboard: whoever holds the access token printed at start (in the
//! URL's query, or as a bearer token), and for anything that changes state, only a page
//! of the dashboard's own origin. Requests naming a host other than the loopback address
//! the dashboard serves on are refused too (a DNS-rebinding page names its own host).

use std::net::SocketAddr;

use axum::http::{HeaderMap, StatusCode, header};

/// 128 random bits, as 32 hex digits.
pub fn new_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The refusal a request gets, or `None` when it may go on.
pub fn refusal(
    expected: &str,
    served_on: SocketAddr,
    headers: &HeaderMap,
    query: Option<&str>,
    changes_state: bool,
) -> Option<(StatusCode, &'static str)> {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    if !host.is_some_and(|h| is_own_host(h, served_on)) {
        return Some((StatusCode::FORBIDDEN, "unknown host"));
    }
    if !presented(headers, query).is_some_and(|t| same(t, expected)) {
        return Some((StatusCode::UNAUTHORIZED, "missing or wrong access token"));
    }
    if changes_state {
        let origin = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok());
        let same_origin = match (origin, host) {
            (Some(o), Some(h)) => o.strip_prefix("http://") == Some(h),
            _ => false,
        };
        if !same_origin {
            return Some((StatusCode::FORBIDDEN, "cross-origin request refused"));
        }
    }
    None
}

/// The token a request carries: `Authorization: Bearer T`, else `?token=T`.
fn presented<'a>(headers: &'a HeaderMap, query: Option<&'a str>) -> Option<&'a str> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    bearer.or_else(|| {
        query?
            .split('&')
            .find_map(|pair| pair.strip_prefix("token="))
    })
}

/// Equal, in a time that does not depend on where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// `Host` names the address served on: its IP or `localhost`, with its port.
fn is_own_host(host: &str, served_on: SocketAddr) -> bool {
    let port = served_on.port().to_string();
    let Some((name, p)) = host.rsplit_once(':') else {
        return false;
    };
    let ip = served_on.ip().to_string();
    p == port && (name == "localhost" || name == ip || name == format!("[{ip}]"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_128_random_bits() {
        let (a, b) = (new_token(), new_token());
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn the_host_must_be_the_loopback_address_served_on() {
        let on: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert!(is_own_host("127.0.0.1:8080", on));
        assert!(is_own_host("localhost:8080", on));
        assert!(!is_own_host("evil.example:8080", on));
        assert!(!is_own_host("127.0.0.1:8081", on));
        assert!(!is_own_host("127.0.0.1", on));
        let v6: SocketAddr = "[::1]:9000".parse().unwrap();
        assert!(is_own_host("[::1]:9000", v6));
    }

    #[test]
    fn a_token_is_taken_from_the_bearer_header_or_the_query() {
        let mut h = HeaderMap::new();
        assert_eq!(presented(&h, Some("a=1&token=xyz")), Some("xyz"));
        h.insert(header::AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(presented(&h, None), Some("abc"));
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }
}
