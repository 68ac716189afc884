//! Uploads: multipart `…/file` and `…/image` stored in memory, served back (without credentials)
//! at the returned URL under the host the client called, deleted with `?url=`; members only, and
//! images must be images.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpStream;

use super::support::{enc, validate, Harness, KEY, SECRET_OLD};

const WAIT: Duration = Duration::from_secs(5);

/// One request with any content type: (status, body bytes, headers).
async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> (u16, Bytes, HeaderMap) {
    let stream = TcpStream::connect(addr).await.expect("tcp connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let req = req.body(Full::new(Bytes::from(body))).expect("request");
    let resp = tokio::time::timeout(WAIT, sender.send_request(req))
        .await
        .expect("response in time")
        .expect("response");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (status, bytes, headers)
}

fn form(filename: &str, content_type: &str, data: &[u8]) -> Vec<u8> {
    let mut body = format!(
        "--BOUNDARY\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: {content_type}\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(data);
    body.extend_from_slice(b"\r\n--BOUNDARY--\r\n");
    body
}

async fn upload(h: &Harness, user: &str, kind: &str, body: Vec<u8>) -> (u16, Value) {
    let path = format!("/channels/messaging/room/{kind}?api_key={}", enc(KEY));
    let headers = [
        ("authorization", h.token(user, SECRET_OLD)),
        ("stream-auth-type", "jwt".to_owned()),
        (
            "content-type",
            "multipart/form-data; boundary=BOUNDARY".to_owned(),
        ),
        ("x-forwarded-host", "chat.example:8443".to_owned()),
    ];
    let (status, bytes, _) = call(h.addr, "POST", &path, &headers, body).await;
    let json: Value = serde_json::from_slice(&bytes).expect("JSON body");
    if status >= 400 {
        validate("APIError", &json);
    }
    (status, json)
}

#[tokio::test]
async fn uploads_are_stored_served_and_deleted() {
    if crate::support::skip_without_openapi(
        "emulator::uploads::uploads_are_stored_served_and_deleted",
    ) {
        return;
    }
    let h = Harness::start().await;
    let a = h.client("alice");
    a.query_channel("room", json!({"data": {"members": ["alice"]}}))
        .await;
    let png: &[u8] = b"\x89PNG\r\n\x1a\n fake image \r\n--BOUNDAR";

    let (status, res) = upload(&h, "alice", "image", form("cat pic.png", "image/png", png)).await;
    assert_eq!(status, 201, "{res}");
    validate("UploadChannelResponse", &res);
    let url = res["file"].as_str().unwrap_or_default().to_owned();
    assert!(
        url.starts_with("http://chat.example:8443/uploads/"),
        "the URL names the host the client called: {url}"
    );
    assert!(url.ends_with("/cat_pic.png"), "{url}");

    // Served back, with no credentials at all, as the stored bytes.
    let path = url.trim_start_matches("http://chat.example:8443");
    let (status, bytes, headers) = call(h.addr, "GET", path, &[], Vec::new()).await;
    assert_eq!(status, 200);
    assert_eq!(&bytes[..], png);
    assert_eq!(headers["content-type"], "image/png");
    assert_eq!(headers["x-content-type-options"], "nosniff");

    // A file: any type, served as an attachment.
    let (status, res) = upload(
        &h,
        "alice",
        "file",
        form("notes.html", "text/html", b"<b>x</b>"),
    )
    .await;
    assert_eq!(status, 201, "{res}");
    validate("UploadChannelFileResponse", &res);
    let file_url = res["file"].as_str().unwrap_or_default().to_owned();
    let file_path = file_url.trim_start_matches("http://chat.example:8443");
    let (_, _, headers) = call(h.addr, "GET", file_path, &[], Vec::new()).await;
    assert!(headers["content-disposition"]
        .to_str()
        .is_ok_and(|v| v.starts_with("attachment")));

    // Refusals: not an image, not a member, not multipart, malformed.
    let (status, _) = upload(&h, "alice", "image", form("a.txt", "text/plain", b"hi")).await;
    assert_eq!(status, 400);
    let (status, err) = upload(&h, "mallory", "image", form("a.png", "image/png", png)).await;
    assert_eq!((status, err["code"].clone()), (403, json!(17)));
    let (status, _) = a
        .raw(
            "POST",
            "/channels/messaging/room/file",
            Some(json!({"file": "x"})),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = upload(&h, "alice", "file", b"--BOUNDARY\r\nbroken".to_vec()).await;
    assert_eq!(status, 400);

    // Delete: only the uploader; then the URL is gone.
    let del = format!("/channels/messaging/room/image?url={}", enc(&url));
    let (status, _) = h.client("bob").raw("DELETE", &del, None).await;
    assert_ne!(status, 200, "bob did not upload it");
    let res = a.send("DELETE", &del, json!({}), 200, "Response").await;
    assert!(res["duration"].is_string());
    let (status, _, _) = call(h.addr, "GET", path, &[], Vec::new()).await;
    assert_eq!(status, 404);
    let (status, _) = a.raw("DELETE", &del, None).await;
    assert_eq!(status, 404, "already deleted");
}
