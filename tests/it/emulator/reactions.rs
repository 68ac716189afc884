//! Reactions: counts, scores, groups and latest reactions on the message, `own_reactions` per
//! viewer (none in events), `reaction.new/updated/deleted` to the channel's watchers only, and
//! `GET /messages/{id}/reactions` newest first.

use serde_json::{json, Value};

use super::support::Harness;

#[tokio::test]
async fn reactions_count_per_viewer_and_reach_the_watchers() {
    if crate::support::skip_without_openapi(
        "emulator::reactions::reactions_count_per_viewer_and_reach_the_watchers",
    ) {
        return;
    }
    let h = Harness::start().await;
    let mut alice = h.connect("alice").await;
    let mut bob = h.connect("bob").await;
    let mut bob_idle = h.connect("bob").await;
    let (a, b) = (h.client("alice"), h.client("bob"));
    a.watch_channel("room", &alice, json!({"members": ["alice", "bob"]}))
        .await;
    b.watch_channel("room", &bob, json!({})).await;
    let id = a.send_message("room", "react to me").await["message"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    for ws in [&mut alice, &mut bob, &mut bob_idle] {
        ws.drain().await;
    }
    let path = format!("/messages/{id}/reaction");

    let res = b
        .post(
            &path,
            json!({"reaction": {"type": "love", "note": "x"}}),
            "SendReactionResponse",
        )
        .await;
    assert_eq!(res["reaction"]["user_id"], "bob");
    assert_eq!(res["reaction"]["custom"]["note"], "x");
    assert_eq!(res["message"]["reaction_counts"], json!({"love": 1}));
    assert_eq!(res["message"]["own_reactions"][0]["type"], "love");
    for ws in [&mut alice, &mut bob] {
        let seen = ws.drain().await;
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(seen[0]["type"], "reaction.new");
        assert_eq!(seen[0]["reaction"]["type"], "love");
        assert_eq!(seen[0]["message"]["latest_reactions"][0]["user_id"], "bob");
        assert_eq!(
            seen[0]["message"]["own_reactions"],
            json!([]),
            "events are shared by every watcher: no own reactions"
        );
    }
    assert!(bob_idle.drain().await.is_empty(), "that tab does not watch");

    a.post(
        &path,
        json!({"reaction": {"type": "love", "score": 3}}),
        "SendReactionResponse",
    )
    .await;
    let res = a
        .post(
            &path,
            json!({"reaction": {"type": "like"}}),
            "SendReactionResponse",
        )
        .await;
    let m = &res["message"];
    assert_eq!(m["reaction_counts"], json!({"love": 2, "like": 1}));
    assert_eq!(m["reaction_scores"], json!({"love": 4, "like": 1}));
    assert_eq!(m["reaction_groups"]["love"]["count"], 2);
    assert_eq!(m["reaction_groups"]["love"]["sum_scores"], 4);
    assert_eq!(m["latest_reactions"].as_array().map(Vec::len), Some(3));
    let own: Vec<&Value> = m["own_reactions"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(own.len(), 2, "alice's own: {own:?}");
    assert!(own.iter().all(|r| r["user_id"] == "alice"));
    assert_eq!(
        bob.drain_types().await,
        ["reaction.new", "reaction.new"],
        "alice's two"
    );
    alice.drain().await;

    // Each viewer sees their own reactions in the channel state.
    let state = b.query_channel("room", json!({"state": true})).await;
    let own = &state["messages"][0]["own_reactions"];
    assert_eq!(own.as_array().map(Vec::len), Some(1), "{own}");
    assert_eq!(own[0]["user_id"], "bob");

    // enforce_unique replaces alice's reactions: a reaction.updated.
    let res = a
        .post(
            &path,
            json!({"reaction": {"type": "wow"}, "enforce_unique": true}),
            "SendReactionResponse",
        )
        .await;
    assert_eq!(
        res["message"]["reaction_counts"],
        json!({"love": 1, "wow": 1})
    );
    assert_eq!(bob.drain_types().await, ["reaction.updated"]);
    assert_eq!(alice.drain_types().await, ["reaction.updated"]);

    let list = a
        .get(&format!("/messages/{id}/reactions"), "GetReactionsResponse")
        .await;
    let kinds: Vec<&str> = list["reactions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["type"].as_str())
        .collect();
    assert_eq!(kinds, ["wow", "love"], "newest first");
    let page = a
        .get(
            &format!("/messages/{id}/reactions?limit=1&offset=1"),
            "GetReactionsResponse",
        )
        .await;
    assert_eq!(page["reactions"][0]["type"], "love");
    let queried = a
        .post(
            &format!("/messages/{id}/reactions"),
            json!({"filter": {"user_id": {"$in": ["bob"]}}, "limit": 5}),
            "QueryReactionsResponse",
        )
        .await;
    assert_eq!(queried["reactions"].as_array().map(Vec::len), Some(1));
    assert_eq!(queried["reactions"][0]["user_id"], "bob");

    // Delete: reaction.deleted; deleting again is 404.
    let (status, res) = b.raw("DELETE", &format!("{path}/love"), None).await;
    assert_eq!(status, 200, "{res}");
    super::support::validate("DeleteReactionResponse", &res);
    assert_eq!(res["message"]["reaction_counts"], json!({"wow": 1}));
    assert_eq!(res["message"]["own_reactions"], json!([]));
    let seen = alice.drain().await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["type"], "reaction.deleted");
    let (status, err) = b.raw("DELETE", &format!("{path}/love"), None).await;
    assert_eq!((status, err["code"].clone()), (404, json!(16)));

    for bad in [
        json!({}),
        json!({"reaction": {"type": ""}}),
        json!({"reaction": {"type": "x", "score": -1}}),
    ] {
        let (status, _) = b.raw("POST", &path, Some(bad.clone())).await;
        assert_eq!(status, 400, "{bad}");
    }
    let (status, _) = b
        .raw(
            "POST",
            "/messages/nope/reaction",
            Some(json!({"reaction": {"type": "x"}})),
        )
        .await;
    assert_eq!(status, 404);
    for ws in [alice, bob, bob_idle] {
        ws.close().await;
    }
}
