//! Header rewriting for proxied requests and responses: hop-by-hop headers (RFC 9110 7.6.1 and any
//! named in `Connection`) are stripped both ways; `Host` becomes upstream's; `X-Forwarded-*` are
//! set.

use std::net::SocketAddr;

use http::{header, HeaderMap, HeaderName, HeaderValue};

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Removes hop-by-hop headers in place.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        h.remove(n);
    }
    for n in HOP_BY_HOP {
        h.remove(*n);
    }
}

/// Copies client headers to the upstream request.
pub fn forward_request(
    from: &HeaderMap,
    to: &mut HeaderMap,
    upstream_host: &str,
    peer: SocketAddr,
    body_replaced: bool,
    proto: &'static str,
) {
    let original_host = from.get(header::HOST).cloned();
    *to = from.clone();
    strip_hop_by_hop(to);
    if body_replaced {
        to.remove(header::CONTENT_LENGTH);
    }
    if let Ok(v) = HeaderValue::from_str(upstream_host) {
        to.insert(header::HOST, v);
    }
    let ip = peer.ip().to_string();
    let xff = match from.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prev) => format!("{prev}, {ip}"),
        None => ip,
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        to.insert("x-forwarded-for", v);
    }
    to.insert("x-forwarded-proto", HeaderValue::from_static(proto));
    if let Some(h) = original_host {
        to.insert("x-forwarded-host", h);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_forwarded() {
        let mut from = HeaderMap::new();
        from.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret-hop"),
        );
        from.insert("x-secret-hop", HeaderValue::from_static("1"));
        from.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        from.insert(header::AUTHORIZATION, HeaderValue::from_static("jwt"));
        from.insert(header::HOST, HeaderValue::from_static("gw.example"));
        from.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        let mut to = HeaderMap::new();
        forward_request(
            &from,
            &mut to,
            "up:1",
            "192.0.2.1:5".parse().unwrap(),
            false,
            "https",
        );
        assert_eq!(to["x-forwarded-proto"], "https");
        assert!(to.get("x-secret-hop").is_none());
        assert!(to.get(header::TRANSFER_ENCODING).is_none());
        assert_eq!(to[header::AUTHORIZATION], "jwt");
        assert_eq!(to[header::HOST], "up:1");
        assert_eq!(to["x-forwarded-for"], "10.0.0.1, 192.0.2.1");
        assert_eq!(to["x-forwarded-host"], "gw.example");
    }
}
