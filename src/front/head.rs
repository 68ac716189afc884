//! Request heads on the lean front, as pure functions (unit-tested and fuzzed: `longpoll_head`):
//! where a head ends ([`head_end`]) and whether it is a `GET /longpoll` this front answers
//! ([`parse_head`]).

use http::{HeaderMap, HeaderValue};

use crate::http::normalize;

/// Headers parsed per request; more hands the request to hyper (which applies its own limit).
const MAX_HEADERS: usize = 48;

const X_FORWARDED_FOR: http::HeaderName = http::HeaderName::from_static("x-forwarded-for");

/// A `GET /longpoll` head reduced to what long-poll needs; see [`parse_head`].
#[derive(Debug)]
pub struct RawHead {
    /// The raw query string.
    pub query: String,
    pub token: Option<String>,
    pub auth_type: Option<String>,
    /// `X-Forwarded-For` values, trusted only from `limits.trusted_proxies`.
    pub forwarded: HeaderMap,
    pub keep_alive: bool,
    /// An HTTP/1.0 request: keep-alive must be said in the response.
    pub http10: bool,
}

/// The length of the head at the start of `buf` (through its empty line), once it is complete.
/// Lines may end in CRLF or in a bare LF, as httparse and hyper accept.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(off) = buf.get(i..)?.iter().position(|&b| b == b'\n') {
        let nl = i + off;
        match buf.get(nl + 1..) {
            Some([b'\n', ..]) => return Some(nl + 2),
            Some([b'\r', b'\n', ..]) => return Some(nl + 3),
            _ => i = nl + 1,
        }
    }
    None
}

/// Parses one complete request head. `Some` only for a bodiless `GET /longpoll` that is the whole
/// of `buf` and that this front can answer; `None` sends the request to hyper.
pub fn parse_head(buf: &[u8]) -> Option<RawHead> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(len)) = req.parse(buf) else {
        return None;
    };
    // Pipelined bytes after the head belong to hyper's more general handling.
    if len != buf.len() || req.method != Some("GET") {
        return None;
    }
    let (path, query) = req.path.map(|p| p.split_once('?').unwrap_or((p, "")))?;
    if normalize(path) != "/longpoll" {
        return None;
    }
    let mut token = None;
    let mut auth_type = None;
    let mut forwarded = HeaderMap::new();
    let mut keep_alive = req.version == Some(1);
    for h in req.headers.iter() {
        let name = h.name;
        let value = || std::str::from_utf8(h.value).ok().map(str::to_string);
        // The first of repeated headers, as hyper's `HeaderMap::get` on the REST path.
        if name.eq_ignore_ascii_case("authorization") {
            if token.is_none() {
                token = value();
            }
        } else if name.eq_ignore_ascii_case("stream-auth-type") {
            if auth_type.is_none() {
                auth_type = value();
            }
        } else if name.eq_ignore_ascii_case("x-forwarded-for") {
            if let Ok(v) = HeaderValue::from_bytes(h.value) {
                forwarded.append(X_FORWARDED_FOR, v);
            }
        } else if name.eq_ignore_ascii_case("connection") {
            let tokens = String::from_utf8_lossy(h.value).to_ascii_lowercase();
            if tokens.split(',').any(|t| t.trim() == "close") {
                keep_alive = false;
            } else if tokens.split(',').any(|t| t.trim() == "keep-alive") {
                keep_alive = true;
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("upgrade")
            || name.eq_ignore_ascii_case("expect")
            || (name.eq_ignore_ascii_case("content-length") && h.value != b"0")
        {
            return None;
        }
    }
    Some(RawHead {
        query: query.to_string(),
        token,
        auth_type,
        forwarded,
        keep_alive,
        http10: req.version == Some(0),
    })
}

#[cfg(test)]
mod tests {
    use super::parse_head;

    #[test]
    fn takes_only_a_bodiless_get_of_longpoll() {
        let ok = parse_head(
            b"GET //longpoll?connection_id=a HTTP/1.1\r\nAuthorization: t\r\nStream-Auth-Type: jwt\r\n\r\n",
        )
        .expect("a poll");
        assert_eq!(ok.query, "connection_id=a");
        assert_eq!(ok.token.as_deref(), Some("t"));
        assert_eq!(ok.auth_type.as_deref(), Some("jwt"));
        assert!(ok.keep_alive);

        for other in [
            &b"POST /longpoll HTTP/1.1\r\n\r\n"[..],
            b"GET /channels HTTP/1.1\r\n\r\n",
            b"GET /longpoll HTTP/1.1\r\ncontent-length: 3\r\n\r\n",
            b"GET /longpoll HTTP/1.1\r\nupgrade: websocket\r\n\r\n",
            b"GET /longpoll HTTP/1.1\r\n\r\nGET /longpoll HTTP/1.1\r\n\r\n",
            b"GET /longpoll HTTP/1.1\r\nhost: x\r\n",
        ] {
            assert!(
                parse_head(other).is_none(),
                "{}",
                String::from_utf8_lossy(other)
            );
        }
    }

    #[test]
    fn heads_end_at_an_empty_line_with_crlf_or_bare_lf() {
        use super::head_end;
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nhost: x\r\n\r\nbody"), Some(27));
        assert_eq!(head_end(b"GET / HTTP/1.1\nhost: x\n\n"), Some(24));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nhost: x\n\r\n"), Some(26));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nhost: x\r\n"), None);
        assert_eq!(head_end(b""), None);
        assert!(parse_head(b"GET /longpoll HTTP/1.1\nhost: x\n\n").is_some());
    }

    #[test]
    fn keep_alive_follows_version_and_connection() {
        let h = |raw: &[u8]| parse_head(raw).expect("a poll").keep_alive;
        assert!(!h(b"GET /longpoll HTTP/1.0\r\n\r\n"));
        assert!(h(
            b"GET /longpoll HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
        ));
        assert!(!h(b"GET /longpoll HTTP/1.1\r\nconnection: Close\r\n\r\n"));
    }
}
