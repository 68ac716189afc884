//! What the HTTP front shares with the REST and WebSocket handlers: the per-server [`Ctx`], the
//! response body type and the JSON response every route answers with. Below `server`, `rest` and
//! `ws`, so they all import it and it imports none of them.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::Full;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::handle::Emulator;

/// The body of every emulator response.
pub(crate) type Body = Full<Bytes>;

/// What every connection task shares.
pub(crate) struct Ctx {
    pub emulator: Emulator,
    /// Tracks connection and WebSocket session tasks.
    pub tracker: TaskTracker,
    pub shutdown: CancellationToken,
}

/// A JSON response with permissive CORS (browsers call the SDK cross-origin).
pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    resp
}
