//! Request heads on the lean front, as pure functions (unit-tested and fuzzed: `longpoll_head`):
//! where a head ends ([`head_end`]), whether it is a `GET /longpoll` this front answers
//! ([`parse_head`]), and the percent-encoding of an Unreal connect's raw JSON target
//! ([`lenient_connect_target`]).

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

/// Rewrites the request line of a `GET /connect` whose target holds bytes RFC 3986 does not allow
/// there (`"`, `{`, `}`, `\\`, `|`, `^`, `` ` ``, `<`, `>`, `#`, and bytes over 0x7F), each as
/// `%XX`, so hyper accepts it: Unreal puts its connect payload in the URL as raw JSON with only
/// spaces encoded, which Stream's Go server takes and hyper refuses with a plain 400.
///
/// Only the target of a well-formed request line `GET SP target SP HTTP/1.x` changes, and only
/// by replacing single visible bytes with their escapes: a target with a control byte (CR, LF,
/// NUL, tab…), a space or DEL is left alone for hyper to refuse, the headers and anything after
/// them are copied as they are, and the method and version are checked exactly. `None` when
/// there is nothing to rewrite or the request is anything else.
pub fn lenient_connect_target(buf: &[u8]) -> Option<Vec<u8>> {
    let line_end = buf.iter().position(|&b| b == b'\n')?;
    let line = buf[..line_end]
        .strip_suffix(b"\r")
        .unwrap_or(&buf[..line_end]);
    let rest = line.strip_prefix(b"GET ")?;
    let sp = rest.iter().rposition(|&b| b == b' ')?;
    let (target, version) = (&rest[..sp], &rest[sp + 1..]);
    if version != b"HTTP/1.1" && version != b"HTTP/1.0" {
        return None;
    }
    let path_end = target
        .iter()
        .position(|&b| b == b'?')
        .unwrap_or(target.len());
    let path = std::str::from_utf8(&target[..path_end]).ok()?;
    if normalize(path) != "/connect" {
        return None;
    }
    let lenient = |b: u8| b >= 0x80 || b"\"{}\\|^`<>#".contains(&b);
    if target.iter().any(|&b| b <= b' ' || b == 0x7f) || !target.iter().any(|&b| lenient(b)) {
        return None;
    }
    let mut out = Vec::with_capacity(buf.len() + 2 * target.len());
    out.extend_from_slice(b"GET ");
    for &b in target {
        if lenient(b) {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        } else {
            out.push(b);
        }
    }
    out.push(b' ');
    out.extend_from_slice(version);
    // The line's own ending (CRLF or LF) and everything after it, unchanged.
    out.extend_from_slice(&buf[line.len()..]);
    Some(out)
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

    #[test]
    fn unreal_raw_json_targets_are_percent_encoded_and_nothing_else_changes() {
        use super::lenient_connect_target as fix;
        let raw = b"GET /connect?json={\"user_details\":{\"id\":\"u\",\"name\":\"A%20B\"}}&api_key=k HTTP/1.1\r\nHost: x\r\nSec-WebSocket-Protocol: wss\r\n\r\n";
        let out = fix(raw).expect("rewritten");
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with(
            "GET /connect?json=%7B%22user_details%22:%7B%22id%22:%22u%22,%22name%22:%22A%20B%22%7D%7D&api_key=k HTTP/1.1\r\nHost: x\r\n"
        ), "{text}");
        assert!(text.ends_with("Sec-WebSocket-Protocol: wss\r\n\r\n"));
        // Bytes over 0x7F (a UTF-8 name) are escaped too; a bare-LF line ending is kept.
        let out = fix("GET /connect?json={\"n\":\"é\"} HTTP/1.0\nHost: x\n\n".as_bytes()).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "GET /connect?json=%7B%22n%22:%22%C3%A9%22%7D HTTP/1.0\nHost: x\n\n"
        );
    }

    #[test]
    fn lenient_targets_refuse_every_smuggling_shape() {
        use super::lenient_connect_target as fix;
        for attack in [
            // Nothing to rewrite: hyper sees the request unchanged.
            &b"GET /connect?json=%7B%7D HTTP/1.1\r\n\r\n"[..],
            // Other paths and methods are never touched.
            b"GET /channels?x={} HTTP/1.1\r\n\r\n",
            b"POST /connect?x={} HTTP/1.1\r\n\r\n",
            b"GET /connectx?x={} HTTP/1.1\r\n\r\n",
            // A space inside the target (a second request line hidden in it), tabs, NUL, DEL.
            b"GET /connect?json={\"a\":1} HTTP/1.1 HTTP/1.1\r\n\r\n",
            b"GET /connect?json={} x HTTP/1.1\r\n\r\n",
            b"GET /connect?json={\t} HTTP/1.1\r\n\r\n",
            b"GET /connect?json={\0} HTTP/1.1\r\n\r\n",
            b"GET /connect?json={\x7f} HTTP/1.1\r\n\r\n",
            // A bare CR cannot end the line early or hide a header.
            b"GET /connect?json={}\rX-Injected: 1 HTTP/1.1\r\n\r\n",
            // Versions other than HTTP/1.0 and 1.1, lower-case methods, absolute forms of a
            // different shape are left to hyper.
            b"GET /connect?json={} HTTP/2.0\r\n\r\n",
            b"get /connect?json={} HTTP/1.1\r\n\r\n",
            b"GET /connect?json={} HTTP/1.1",
            b"GET  /connect?json={} HTTP/1.1\r\n\r\n",
        ] {
            assert!(fix(attack).is_none(), "{}", String::from_utf8_lossy(attack));
        }
        // The head after the request line is copied byte for byte, whatever it holds: a header
        // with a quote stays a header (hyper judges it), and the rewrite never adds CR or LF.
        let raw = b"GET /connect?j={} HTTP/1.1\r\nX-A: \"q\"\r\nContent-Length: 5\r\n\r\nhello";
        let out = fix(raw).unwrap();
        assert!(out.ends_with(b"\r\nX-A: \"q\"\r\nContent-Length: 5\r\n\r\nhello"));
        assert_eq!(
            out.iter().filter(|&&b| b == b'\n').count(),
            raw.iter().filter(|&&b| b == b'\n').count()
        );
    }

    proptest::proptest! {
        /// Whatever a `/connect` target holds, a rewrite changes only the target, and what it
        /// makes parses as one request line (so hyper judges the rest as it would anyway).
        #[test]
        fn lenient_rewrites_touch_only_the_target(
            target in proptest::collection::vec(proptest::sample::select(
                b"aZ09-_.~%:/?&=+,;\"{}\\|^`<>#\x80\xc3\xa9 \t\r\n\0\x7f".to_vec()), 0..40),
            tail in proptest::collection::vec(proptest::num::u8::ANY, 0..40),
        ) {
            let mut raw = b"GET /connect?json=".to_vec();
            raw.extend_from_slice(&target);
            raw.extend_from_slice(b" HTTP/1.1\r\nHost: x\r\n\r\n");
            raw.extend_from_slice(&tail);
            if let Some(out) = super::lenient_connect_target(&raw) {
                let nl = |b: &[u8]| b.iter().position(|&c| c == b'\n').unwrap();
                proptest::prop_assert_eq!(&raw[nl(&raw)..], &out[nl(&out)..]);
                let mut headers = [httparse::EMPTY_HEADER; 4];
                let mut req = httparse::Request::new(&mut headers);
                proptest::prop_assert!(req.parse(&out[..nl(&out) + 1]).is_ok());
                proptest::prop_assert_eq!(req.method, Some("GET"));
            }
        }
    }
}
