//! HTTP helpers every layer shares: the response body type and its constructors, JSON and
//! Stream-shaped error responses, path normalisation, the client connection stream ([`Io`]), the
//! request body handlers read ([`body`]) and CORS ([`cors`]). Nothing here knows a route.

pub mod body;
pub mod cors;

use bytes::Bytes;
use http::{header, HeaderValue, Response};
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::error::EdgeError;
use crate::upstream::BoxError;

pub use body::ReqBody;

/// Response body used everywhere: full, empty, or streamed from upstream.
pub type Body = BoxBody<Bytes, BoxError>;

/// An empty body.
pub fn empty() -> Body {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed()
}

/// A complete body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A JSON response.
pub fn json(status: http::StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// A Stream-shaped JSON error (never an empty body: the SDK reads `code` from it).
pub fn json_error(err: &EdgeError) -> Response<Body> {
    json(err.class().status, err.api_error().to_string())
}

/// Marks a response as one no cache may store (`Cache-Control: no-store`) unless it already says
/// otherwise (the API's own header on a proxied REST answer wins). Neither Stream's OpenAPI spec
/// nor the JS SDK names a cache header, so this is the edge's own guarantee: a long-poll or REST
/// answer is per user and per moment, and a corporate caching proxy (Squid, ProxySG) must never
/// replay one to another request.
pub fn no_store(resp: &mut Response<Body>) {
    resp.headers_mut()
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
}

/// Collapses the leading `//` a trailing-slash `baseURL` produces (stream-protocol.md 1.2).
pub(crate) fn normalize(path: &str) -> &str {
    let trimmed = path.trim_start_matches('/');
    if trimmed.len() + 1 < path.len() {
        &path[path.len() - trimmed.len() - 1..]
    } else {
        path
    }
}

/// Any client stream (plain TCP or TLS).
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// A boxed client stream, as WebSocket sessions hold it.
pub type BoxIo = Box<dyn Io>;

#[cfg(test)]
mod tests {
    #[test]
    fn double_slashes_collapse() {
        assert_eq!(super::normalize("//connect"), "/connect");
        assert_eq!(super::normalize("/channels"), "/channels");
        assert_eq!(super::normalize("///a/b"), "/a/b");
    }
}
