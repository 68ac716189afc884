//! CORS for browsers: every SDK call is a preflighted cross-origin XHR without credentials, so a
//! wildcard origin is right (stream-protocol.md 7.9). Preflights are answered by the gateway
//! itself; responses get `Access-Control-Allow-Origin: *` unless upstream set one.

use http::{header, HeaderValue, Request, Response, StatusCode};

use super::{empty, Body};

/// Headers the SDK sends; echoed when the browser names none.
const SDK_HEADERS: &str =
    "authorization, content-type, stream-auth-type, x-stream-client, x-client-request-id";
const METHODS: &str = "GET, POST, PUT, PATCH, DELETE, OPTIONS";

/// Answers an `OPTIONS` preflight.
pub fn preflight<B>(req: &Request<B>) -> Response<Body> {
    // Echo what the browser asks for (apps add headers via axiosRequestConfig), provided it is a
    // well-formed header list; otherwise allow the SDK's own set.
    let allow = req
        .headers()
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .filter(|v| {
            v.as_bytes().len() <= 1024
                && v.as_bytes()
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_, ".contains(b))
        })
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static(SDK_HEADERS));
    let mut resp = Response::new(empty());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    let h = resp.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(METHODS),
    );
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, allow);
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    resp
}

/// Adds the allow-origin header to any response lacking one.
pub fn decorate(resp: &mut Response<Body>) {
    resp.headers_mut()
        .entry(header::ACCESS_CONTROL_ALLOW_ORIGIN)
        .or_insert(HeaderValue::from_static("*"));
}
