//! The JS SDK's answers stay as they were where the native SDKs differ: an untyped error frame on
//! a refused connect, and a session-ending close with no error frame before it (the JS SDK would
//! read one as final).

use futures_util::StreamExt;
use stream_edge::config::{DEV_API_KEY, DEV_API_SECRET};
use tokio_tungstenite::tungstenite::Message;

use crate::support::*;

/// The JS SDK's `/connect` URL (stream-chat 9.53.0 in Node).
fn js_url(gw: &TestGateway, user: &str, token: &str) -> String {
    let json = format!(
        r#"{{"user_id":"{user}","user_details":{{"id":"{user}"}},"client_request_id":"r1"}}"#
    );
    let q = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("json", &json)
        .append_pair("api_key", DEV_API_KEY)
        .append_pair("authorization", token)
        .append_pair("stream-auth-type", "jwt")
        .append_pair("X-Stream-Client", "stream-chat-js-v9.53.0-node")
        .finish();
    format!("ws://{}/connect?{q}", gw.running().addr)
}

/// The frame after the handshake, whatever it is (text or close), bounded by [`WAIT`].
async fn next_frame(ws: &mut Ws) -> Message {
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await {
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            Ok(Some(Ok(m))) => return m,
            other => panic!("no frame: {other:?}"),
        }
    }
}

#[tokio::test]
async fn refusals_and_session_ends_are_answered_as_before() {
    let gw = TestGateway::start().await;
    // A refusal: untyped error frame, then close 1000.
    let forged = sign("not-the-secret", "js-d", None);
    let (mut ws, first) = gw.ws_raw(&js_url(&gw, "js-d", &forged)).await;
    assert!(first.get("type").is_none(), "{first}");
    assert_eq!(first["error"]["code"], 43);
    assert_eq!(close_code(&mut ws).await, 1000);

    // Upstream loss: the close comes with no error frame before it.
    let tok = sign(DEV_API_SECRET, "js-d", None);
    let (mut ws, first) = gw.ws_raw(&js_url(&gw, "js-d", &tok)).await;
    assert_eq!(first["type"], "health.check");
    let emu = gw.running().embedded.clone().expect("embedded");
    assert_eq!(emu.drop_connections_of(DEV_API_KEY, "js-d"), 1);
    match next_frame(&mut ws).await {
        Message::Close(Some(c)) => assert_eq!(u16::from(c.code), 1011),
        other => panic!("expected the close first, got {other:?}"),
    }
    assert_eq!(
        gw.metric("stream_edge_ws_dialect_total", &[("dialect", "js")])
            .await,
        2.0
    );
}
