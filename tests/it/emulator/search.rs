//! Search: messages of the caller's channels that the channel filter selects, by query text or
//! message filter, newest first, paged with `next`; deleted messages are not found.

use serde_json::{json, Value};

use super::support::{enc, Client, Harness};

async fn search(c: &Client, payload: Value) -> Value {
    let path = format!("/search?payload={}", enc(&payload.to_string()));
    c.get(&path, "SearchResponse").await
}

fn texts(res: &Value) -> Vec<String> {
    res["results"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|r| r["message"]["text"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn search_finds_own_channels_messages() {
    if crate::support::skip_without_openapi("emulator::search::search_finds_own_channels_messages")
    {
        return;
    }
    let h = Harness::start().await;
    let (a, b) = (h.client("alice"), h.client("bob"));
    a.query_channel("room", json!({"data": {"members": ["alice", "bob"]}}))
        .await;
    a.query_channel("solo", json!({"data": {"members": ["alice"]}}))
        .await;
    for text in ["Lunch at noon", "no lunch today", "meeting moved", "LUNCH!"] {
        a.send_message("room", text).await;
    }
    a.send_message("solo", "lunch alone").await;
    let gone = a.send_message("room", "lunch secret").await["message"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (status, _) = a.raw("DELETE", &format!("/messages/{gone}"), None).await;
    assert_eq!(status, 200);

    let everywhere = json!({"members": {"$in": ["bob"]}});
    let res = search(
        &b,
        json!({"filter_conditions": everywhere, "query": "lunch"}),
    )
    .await;
    assert_eq!(
        texts(&res),
        ["LUNCH!", "no lunch today", "Lunch at noon"],
        "newest first, case-insensitive, deleted and other channels' messages left out"
    );
    assert_eq!(
        res["results"][0]["message"]["channel"]["cid"],
        "messaging:room"
    );

    // Bob is no member of solo: a filter naming it finds nothing for him, everything for alice.
    let solo = json!({"cid": "messaging:solo"});
    let res = search(&b, json!({"filter_conditions": solo, "query": "lunch"})).await;
    assert_eq!(res["results"], json!([]));
    let res = search(&a, json!({"filter_conditions": solo, "query": "lunch"})).await;
    assert_eq!(texts(&res), ["lunch alone"]);

    // Message filters, sort and paging.
    let res = search(
        &b,
        json!({
            "filter_conditions": everywhere,
            "message_filter_conditions": {"$or": [{"text": {"$autocomplete": "meet"}}, {"text": {"$q": "noon"}}]},
            "sort": [{"field": "created_at", "direction": 1}],
        }),
    )
    .await;
    assert_eq!(texts(&res), ["Lunch at noon", "meeting moved"]);
    let first = search(
        &b,
        json!({"filter_conditions": everywhere, "message_filter_conditions": {"user_id": "alice"}, "limit": 2}),
    )
    .await;
    assert_eq!(texts(&first), ["LUNCH!", "meeting moved"]);
    let next = first["next"].as_str().unwrap_or_default();
    let second = search(
        &b,
        json!({"filter_conditions": everywhere, "message_filter_conditions": {"user_id": "alice"}, "limit": 2, "next": next}),
    )
    .await;
    assert_eq!(texts(&second), ["no lunch today", "Lunch at noon"]);
    assert!(second.get("next").is_none(), "{second}");

    for bad in [
        json!({"query": "x"}),
        json!({"filter_conditions": everywhere}),
        json!({"filter_conditions": everywhere, "message_filter_conditions": {"text": {"$regex": "x"}}}),
        json!({"filter_conditions": everywhere, "query": "x", "offset": 1, "next": "2"}),
    ] {
        let path = format!("/search?payload={}", enc(&bad.to_string()));
        let (status, _) = b.raw("GET", &path, None).await;
        assert_eq!(status, 400, "{bad}");
    }
}
