//! Polls: create, attach to a message by `poll_id`, vote (unique votes change, answers), remove a
//! vote, add an option, close; each `poll.*` event to the watchers of the message's channel only,
//! with `own_votes` per caller and none in events.

use serde_json::{json, Value};

use super::support::Harness;

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn polls_vote_and_close_for_the_watchers() {
    if crate::support::skip_without_openapi(
        "emulator::polls::polls_vote_and_close_for_the_watchers",
    ) {
        return;
    }
    let h = Harness::start().await;
    let mut alice = h.connect("alice").await;
    let mut bob = h.connect("bob").await;
    let mut carol = h.connect("carol").await;
    let (a, b) = (h.client("alice"), h.client("bob"));
    a.watch_channel("room", &alice, json!({"members": ["alice", "bob"]}))
        .await;
    b.watch_channel("room", &bob, json!({})).await;

    let res = a
        .post(
            "/polls",
            json!({"name": "Lunch?", "options": [{"text": "pizza"}, {"text": "sushi"}],
                   "enforce_unique_vote": true, "allow_answers": true, "mood": "hungry"}),
            "PollResponse",
        )
        .await;
    let poll_id = s(&res["poll"]["id"]);
    assert_eq!(res["poll"]["custom"]["mood"], "hungry");
    let (pizza, sushi) = (
        s(&res["poll"]["options"][0]["id"]),
        s(&res["poll"]["options"][1]["id"]),
    );
    let sent = a
        .post(
            "/channels/messaging/room/message",
            json!({"message": {"text": "vote!", "poll_id": poll_id}}),
            "SendMessageResponse",
        )
        .await;
    let mid = s(&sent["message"]["id"]);
    assert_eq!(sent["message"]["poll"]["name"], "Lunch?");
    for ws in [&mut alice, &mut bob, &mut carol] {
        ws.drain().await;
    }

    let vote_path = format!("/messages/{mid}/polls/{poll_id}/vote");
    let res = b
        .post(
            &vote_path,
            json!({"vote": {"option_id": pizza}}),
            "PollVoteResponse",
        )
        .await;
    assert_eq!(res["poll"]["vote_counts_by_option"][&pizza], 1);
    assert_eq!(res["poll"]["own_votes"][0]["option_id"], pizza);
    for ws in [&mut alice, &mut bob] {
        let seen = ws.drain().await;
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(seen[0]["type"], "poll.vote_casted");
        assert_eq!(seen[0]["poll_vote"]["user_id"], "bob");
        assert_eq!(seen[0]["poll"]["own_votes"], json!([]));
    }
    assert!(carol.drain().await.is_empty(), "carol does not watch");

    // A unique vote moves; an answer is separate.
    let res = b
        .post(
            &vote_path,
            json!({"vote": {"option_id": sushi}}),
            "PollVoteResponse",
        )
        .await;
    assert_eq!(res["poll"]["vote_count"], 1);
    assert_eq!(res["poll"]["vote_counts_by_option"][&sushi], 1);
    let vote_id = s(&res["vote"]["id"]);
    assert_eq!(alice.drain_types().await, ["poll.vote_changed"]);
    let res = a
        .post(
            &vote_path,
            json!({"vote": {"answer_text": "tacos"}}),
            "PollVoteResponse",
        )
        .await;
    assert_eq!(res["poll"]["answers_count"], 1);
    assert_eq!(res["poll"]["latest_answers"][0]["answer_text"], "tacos");
    let answers = b
        .post(
            &format!("/polls/{poll_id}/votes"),
            json!({"filter": {"is_answer": true}}),
            "PollVotesResponse",
        )
        .await;
    assert_eq!(answers["votes"][0]["answer_text"], "tacos");
    assert_eq!(answers["votes"].as_array().map(Vec::len), Some(1));
    let got = b.get(&format!("/polls/{poll_id}"), "PollResponse").await;
    assert_eq!(got["poll"]["own_votes"].as_array().map(Vec::len), Some(1));

    // Removing a vote; only one's own.
    let del = format!("{vote_path}/{vote_id}");
    let (status, _) = a.raw("DELETE", &del, None).await;
    assert_eq!(status, 404, "not alice's vote");
    let res = b
        .send("DELETE", &del, json!({}), 200, "PollVoteResponse")
        .await;
    assert_eq!(res["poll"]["vote_count"], 0);
    for ws in [&mut alice, &mut bob] {
        ws.drain().await;
    }

    // Options and closing: the creator only.
    let (status, _) = b
        .raw(
            "POST",
            &format!("/polls/{poll_id}/options"),
            Some(json!({"text": "salad"})),
        )
        .await;
    assert_eq!(status, 403);
    let res = a
        .post(
            &format!("/polls/{poll_id}/options"),
            json!({"text": "salad"}),
            "PollOptionResponse",
        )
        .await;
    assert_eq!(res["poll_option"]["text"], "salad");
    assert_eq!(bob.drain_types().await, ["poll.updated"]);
    let (status, _) = b
        .raw(
            "PATCH",
            &format!("/polls/{poll_id}"),
            Some(json!({"set": {"is_closed": true}})),
        )
        .await;
    assert_eq!(status, 403);
    let res = a
        .send(
            "PATCH",
            &format!("/polls/{poll_id}"),
            json!({"set": {"is_closed": true}}),
            200,
            "PollResponse",
        )
        .await;
    assert_eq!(res["poll"]["is_closed"], true);
    assert_eq!(bob.drain_types().await, ["poll.closed"]);
    let (status, _) = b
        .raw(
            "POST",
            &vote_path,
            Some(json!({"vote": {"option_id": pizza}})),
        )
        .await;
    assert_eq!(status, 400, "closed");

    for bad in [
        json!({"options": []}),
        json!({"name": "x", "max_votes_allowed": 11}),
        json!({"name": "x", "voting_visibility": "secret"}),
    ] {
        let (status, _) = a.raw("POST", "/polls", Some(bad.clone())).await;
        assert_eq!(status, 400, "{bad}");
    }
    let (status, _) = a
        .raw(
            "POST",
            "/channels/messaging/room/message",
            Some(json!({"message": {"text": "x", "poll_id": "nope"}})),
        )
        .await;
    assert_eq!(status, 400);

    // Delete: poll.deleted, and the message no longer carries it.
    let (status, _) = a.raw("DELETE", &format!("/polls/{poll_id}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(bob.drain_types().await, ["poll.deleted"]);
    let got = a
        .get(&format!("/messages/{mid}"), "GetMessageResponse")
        .await;
    assert!(got["message"].get("poll").is_none());
    for ws in [alice, bob, carol] {
        ws.close().await;
    }
}

#[tokio::test]
async fn poll_options_full_update_and_query() {
    if crate::support::skip_without_openapi("emulator::polls::poll_options_full_update_and_query") {
        return;
    }
    let h = Harness::start().await;
    let (a, b) = (h.client("alice"), h.client("bob"));
    a.query_channel("room", json!({"data": {"members": ["alice", "bob"]}}))
        .await;
    let res = a
        .post(
            "/polls",
            json!({"name": "Day?", "options": [{"text": "mon"}, {"text": "tue"}], "allow_answers": true}),
            "PollResponse",
        )
        .await;
    let id = s(&res["poll"]["id"]);
    let (mon, tue) = (
        s(&res["poll"]["options"][0]["id"]),
        s(&res["poll"]["options"][1]["id"]),
    );
    let none = b
        .post("/polls/query", json!({}), "QueryPollsResponse")
        .await;
    assert_eq!(none["polls"], json!([]), "bob cannot see it yet");
    let sent = a
        .post(
            "/channels/messaging/room/message",
            json!({"message": {"text": "pick", "poll_id": id}}),
            "SendMessageResponse",
        )
        .await;
    let mid = s(&sent["message"]["id"]);
    let mine = b
        .post(
            "/polls/query",
            json!({"filter": {"is_closed": false}, "limit": 5}),
            "QueryPollsResponse",
        )
        .await;
    assert_eq!(mine["polls"][0]["id"], id.as_str());
    for option_id in [&mon, &tue] {
        b.post(
            &format!("/messages/{mid}/polls/{id}/vote"),
            json!({"vote": {"option_id": option_id}}),
            "PollVoteResponse",
        )
        .await;
    }

    // Options one by one.
    let got = b
        .get(&format!("/polls/{id}/options/{tue}"), "PollOptionResponse")
        .await;
    assert_eq!(got["poll_option"]["text"], "tue");
    let res = a
        .send(
            "PUT",
            &format!("/polls/{id}/options"),
            json!({"id": tue, "text": "tuesday"}),
            201,
            "PollOptionResponse",
        )
        .await;
    assert_eq!(res["poll_option"]["text"], "tuesday");
    let (status, _) = a
        .raw("DELETE", &format!("/polls/{id}/options/{mon}"), None)
        .await;
    assert_eq!(status, 200);
    let got = b.get(&format!("/polls/{id}"), "PollResponse").await;
    assert_eq!(got["poll"]["vote_count"], 1, "mon's vote went with it");

    // A full update keeps the options it names by id (and their votes) and resets the rest.
    let res = a
        .send(
            "PUT",
            "/polls",
            json!({"id": id, "name": "Which day?", "options": [{"id": tue, "text": "tuesday"}, {"text": "wed"}]}),
            201,
            "PollResponse",
        )
        .await;
    assert_eq!(res["poll"]["name"], "Which day?");
    assert_eq!(res["poll"]["allow_answers"], false);
    assert_eq!(res["poll"]["options"].as_array().map(Vec::len), Some(2));
    assert_eq!(res["poll"]["vote_counts_by_option"][&tue], 1);
    let (status, _) = b
        .raw("PUT", "/polls", Some(json!({"id": id, "name": "mine"})))
        .await;
    assert_eq!(status, 403, "only the creator");
}
