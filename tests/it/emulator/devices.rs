//! Push devices: the connect payload's `device` registers one, `POST/GET/DELETE /devices` manage
//! them per the spec, and `me.devices` shows them.

use serde_json::json;

use super::support::{self, Harness};

#[tokio::test]
async fn connect_device_and_devices_routes() {
    if crate::support::skip_without_openapi("emulator::devices::connect_device_and_devices_routes")
    {
        return;
    }
    let h = Harness::start().await;
    let device = json!({"id": "tok-1", "push_provider": "firebase", "push_provider_name": "prod"});
    let first = h.connect_extra("alice", json!({ "device": device })).await;
    // The first frame of that very connection already lists it.
    let me_devices = first.hello["me"]["devices"].clone();
    assert_eq!(me_devices.as_array().map(Vec::len), Some(1), "{me_devices}");
    assert_eq!(me_devices[0]["id"], "tok-1");
    assert_eq!(me_devices[0]["push_provider"], "firebase");
    assert_eq!(me_devices[0]["push_provider_name"], "prod");
    assert_eq!(me_devices[0]["user_id"], "alice");

    let a = h.client("alice");
    let body = json!({"id": "tok-2", "push_provider": "apn"});
    a.post("/devices", body.clone(), "Response").await;
    // The same device again has no effect.
    a.post("/devices", body, "Response").await;
    let list = a.get("/devices", "ListDevicesResponse").await;
    let ids: Vec<&str> = list["devices"]
        .as_array()
        .map(|l| l.iter().filter_map(|d| d["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(ids, ["tok-1", "tok-2"]);
    // A later connection's `me` is current.
    let second = h.connect("alice").await;
    assert_eq!(
        second.hello["me"]["devices"].as_array().map(Vec::len),
        Some(2)
    );

    a.send("DELETE", "/devices?id=tok-1", json!({}), 200, "Response")
        .await;
    let list = a.get("/devices", "ListDevicesResponse").await;
    assert_eq!(list["devices"].as_array().map(Vec::len), Some(1));
    let (status, err) = a.raw("DELETE", "/devices?id=tok-1", None).await;
    assert_eq!((status, err["code"].clone()), (400, json!(4)));

    // Bad devices are input errors; a user token manages only its own devices.
    let (status, err) = a
        .raw(
            "POST",
            "/devices",
            Some(json!({"id": "x", "push_provider": "fax"})),
        )
        .await;
    assert_eq!((status, err["code"].clone()), (400, json!(4)));
    let (status, err) = a
        .raw(
            "POST",
            "/devices",
            Some(json!({"id": "x", "push_provider": "apn", "user_id": "bob"})),
        )
        .await;
    assert_eq!((status, err["code"].clone()), (403, json!(17)));
    // A server token names the user.
    let server = h.server_client();
    let list = server
        .get("/devices?user_id=alice", "ListDevicesResponse")
        .await;
    assert_eq!(list["devices"][0]["id"], "tok-2");
    let (status, _) = server.raw("GET", "/devices", None).await;
    assert_eq!(status, 400);

    // Other users never see someone's push tokens.
    let payload = json!({"filter_conditions": {"id": "alice"}});
    let path = format!("/users?payload={}", support::enc(&payload.to_string()));
    let res = h.client("bob").get(&path, "QueryUsersResponse").await;
    assert_eq!(res["users"][0]["devices"], json!([]));
    let res = a.get(&path, "QueryUsersResponse").await;
    assert_eq!(res["users"][0]["devices"][0]["id"], "tok-2");
    first.close().await;
    second.close().await;
}

#[tokio::test]
async fn a_bad_connect_device_fails_the_handshake() {
    if crate::support::skip_without_openapi(
        "emulator::devices::a_bad_connect_device_fails_the_handshake",
    ) {
        return;
    }
    let h = Harness::start().await;
    let payload = json!({"user_id": "alice", "device": {"id": "t"}});
    let url = support::payload_url(
        h.addr,
        support::KEY,
        &h.token("alice", support::SECRET_OLD),
        &payload,
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("upgrade");
    let first = support::next_text(&mut ws).await;
    assert_eq!(first["error"]["code"], 4, "{first}");
    assert_eq!(h.emu.connections_of(support::KEY, "alice"), 0);
}
