//! Multiplexing is invisible (issue 15): each tab ends up with the events it would have had on its
//! own connection. One targeted test per point of the issue; the upstream is the embedded emulator,
//! reached through [`Gate`] where a test must hold a request or a response on its way.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::Method;
use serde_json::{json, Value};
use stream_edge::config::DEV_API_KEY;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use crate::support::*;

/// What a [`Gate`] rule holds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Hold {
    /// The matching request, before it reaches upstream.
    Request,
    /// Upstream's answer to the matching request, after upstream has acted on it.
    Response,
}

struct Rule {
    prefix: String,
    hold: Hold,
    hit: watch::Sender<bool>,
    open: watch::Sender<bool>,
}

/// A TCP proxy in front of the emulator that can hold one request or one response (matched by the
/// start of its request line) until the test opens it, and records every request line in order.
struct Gate {
    addr: SocketAddr,
    rules: Arc<Mutex<Vec<Arc<Rule>>>>,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Gate {
    async fn start(target: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let rules: Arc<Mutex<Vec<Arc<Rule>>>> = Arc::default();
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let (r, l) = (rules.clone(), lines.clone());
        tokio::spawn(async move {
            while let Ok((down, _)) = listener.accept().await {
                tokio::spawn(pipe(down, target, r.clone(), l.clone()));
            }
        });
        Gate { addr, rules, lines }
    }

    /// Arms a rule; returns it to wait on (`hit`) and open.
    fn arm(&self, prefix: &str, hold: Hold) -> Arc<Rule> {
        let rule = Arc::new(Rule {
            prefix: prefix.to_string(),
            hold,
            hit: watch::channel(false).0,
            open: watch::channel(false).0,
        });
        self.rules.lock().unwrap().push(rule.clone());
        rule
    }

    /// How many forwarded request lines start with `prefix`.
    fn count(&self, prefix: &str) -> usize {
        let lines = self.lines.lock().unwrap();
        lines.iter().filter(|l| l.starts_with(prefix)).count()
    }

    /// Where the last request line starting with `prefix` is in the recorded order.
    fn seen(&self, prefix: &str) -> Option<usize> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .rposition(|l| l.starts_with(prefix))
    }
}

impl Rule {
    async fn wait_hit(&self) {
        let mut rx = self.hit.subscribe();
        tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|h| *h))
            .await
            .expect("the held call reaches the gate")
            .unwrap();
    }

    fn open(&self) {
        self.open.send_replace(true);
    }

    async fn wait_open(&self) {
        let mut rx = self.open.subscribe();
        let _ = rx.wait_for(|o| *o).await;
    }
}

async fn pipe(
    mut down: tokio::net::TcpStream,
    target: SocketAddr,
    rules: Arc<Mutex<Vec<Arc<Rule>>>>,
    lines: Arc<Mutex<Vec<String>>>,
) {
    let Ok(up) = tokio::net::TcpStream::connect(target).await else {
        return;
    };
    let (mut up_r, mut up_w) = up.into_split();
    let (mut down_r, mut down_w) = down.split();
    let (answer_tx, mut answer_rx) = watch::channel::<Option<Arc<Rule>>>(None);
    let to_up = async {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = match down_r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            let matched = {
                let mut rules = rules.lock().unwrap();
                let at = rules.iter().position(|r| text.starts_with(&r.prefix));
                at.map(|i| rules.remove(i))
            };
            if let Some(rule) = matched {
                rule.hit.send_replace(true);
                match rule.hold {
                    Hold::Request => rule.wait_open().await,
                    Hold::Response => {
                        answer_tx.send_replace(Some(rule));
                    }
                }
            }
            // Recorded as forwarded, so the order is the order upstream sees.
            for line in text.lines().filter(|l| l.contains(" HTTP/1.1")) {
                lines.lock().unwrap().push(line.to_string());
            }
            if up_w.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = up_w.shutdown().await;
    };
    let to_down = async {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = match up_r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let held = answer_rx.borrow_and_update().clone();
            if let Some(rule) = held {
                rule.wait_open().await;
                let _ = answer_rx.borrow_and_update();
            }
            if down_w.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    };
    tokio::join!(to_up, to_down);
}

/// A gateway on the emulator behind a gate, with a long linger: nothing here may depend on a hub
/// retiring.
async fn gated() -> (TestGateway, Gate, tokio_util::sync::CancellationToken) {
    let (emu, stop) = emulator().await;
    let gate = Gate::start(emu).await;
    let mut cfg = upstream_at(gate.addr);
    cfg.upstream.linger = Duration::from_secs(60);
    (TestGateway::start_with(cfg).await, gate, stop)
}

/// Waits for the first event of `kind` on `ws`, skipping others; returns it.
async fn until(ws: &mut Ws, kind: &str) -> Value {
    loop {
        let ev = next_json(ws).await;
        if ev["type"] == kind {
            return ev;
        }
    }
}

/// Point 1: a closed tab's channels are released upstream at once (not when the hub lingers out):
/// the other user sees `user.watching.stop`, and the user's remaining tab, which watches the
/// channel nowhere, gets `notification.message_new` again.
#[tokio::test]
async fn a_closed_tab_releases_its_channels_upstream() {
    let (gw, _gate, _stop) = gated().await;
    let (mut t1, c1) = gw.connect("rel-a").await;
    let (mut t2, _c2) = gw.connect("rel-a").await;
    let (mut b, cb) = gw.connect("rel-b").await;
    gw.watch("rel-a", &c1, "rel-ch", &["rel-a", "rel-b"]).await;
    gw.watch("rel-b", &cb, "rel-ch", &["rel-a", "rel-b"]).await;
    t1.close(None).await.unwrap();
    drop(t1);
    let stop = until(&mut b, "user.watching.stop").await;
    assert_eq!(stop["user"]["id"], "rel-a", "{stop}");
    assert_eq!(stop["watcher_count"], 1, "{stop}");
    gw.send("rel-b", "rel-ch", "after close").await;
    let note = until(&mut t2, "notification.message_new").await;
    assert_eq!(note["cid"], "messaging:rel-ch", "{note}");
    assert_eq!(note["message"]["text"], "after close");
    let released = gw
        .metric(
            "stream_edge_subscriptions_released_total",
            &[("via", "session_closed"), ("outcome", "ok")],
        )
        .await;
    assert_eq!(released, 1.0);
}

/// Point 2: events of channels a `POST /channels` subscribes to, which arrive while its answer is
/// still on the way, reach the tab in order (held, then delivered once the answer is read).
#[tokio::test]
async fn no_event_is_lost_while_a_watch_is_in_flight() {
    let (gw, gate, _stop) = gated().await;
    let (mut t1, c1) = gw.connect("fl-a").await;
    let (_b, cb) = gw.connect("fl-b").await;
    gw.watch("fl-b", &cb, "fl-ch", &["fl-a", "fl-b"]).await;
    let held = gate.arm("POST /channels?", Hold::Response);
    let query = {
        let gw_base = gw.base.clone();
        let tok = gw.token("fl-a", None);
        let c1 = c1.clone();
        tokio::spawn(async move {
            let body =
                json!({"filter_conditions":{"members":{"$in":["fl-a"]}},"watch":true,"state":true});
            http(
                Method::POST,
                &format!(
                    "{gw_base}/channels?user_id=fl-a&api_key={DEV_API_KEY}&connection_id={c1}"
                ),
                Some(&body.to_string()),
                &[("authorization", &tok)],
            )
            .await
        })
    };
    held.wait_hit().await;
    for i in 0..5 {
        gw.send("fl-b", "fl-ch", &format!("in flight {i}")).await;
    }
    eventually("the in-flight events are held", || async {
        gw.metric(
            "stream_edge_watch_held_events_total",
            &[("outcome", "held")],
        )
        .await
            >= 5.0
    })
    .await;
    held.open();
    let (status, _) = query.await.unwrap();
    assert!(status.is_success());
    for i in 0..5 {
        let ev = until(&mut t1, "message.new").await;
        assert_eq!(ev["message"]["text"], format!("in flight {i}"), "{ev}");
    }
}

/// Point 3: a stop-watching forwarded for one tab cannot overtake a later watch of the same channel
/// by another tab: both go upstream in the order the gateway decided them, and the second tab
/// keeps getting the channel's events.
#[tokio::test]
async fn stop_watching_never_overtakes_a_later_watch() {
    let (gw, gate, _stop) = gated().await;
    let (_t1, c1) = gw.connect("ord-a").await;
    let (mut t2, c2) = gw.connect("ord-a").await;
    gw.connect("ord-b").await;
    gw.watch("ord-a", &c1, "ord-ch", &["ord-a", "ord-b"]).await;
    let stop = gate.arm(
        "POST /channels/messaging/ord-ch/stop-watching",
        Hold::Request,
    );
    let stopping = {
        let gw_base = gw.base.clone();
        let tok = gw.token("ord-a", None);
        let c1 = c1.clone();
        tokio::spawn(async move {
            http(
                Method::POST,
                &format!("{gw_base}/channels/messaging/ord-ch/stop-watching?user_id=ord-a&api_key={DEV_API_KEY}&connection_id={c1}"),
                Some("{}"),
                &[("authorization", &tok)],
            )
            .await
        })
    };
    stop.wait_hit().await;
    let query_line = "POST /channels/messaging/ord-ch/query";
    let stop_line = "POST /channels/messaging/ord-ch/stop-watching";
    let queries = gate.count(query_line);
    let watching = {
        let gw_base = gw.base.clone();
        let tok = gw.token("ord-a", None);
        tokio::spawn(async move {
            let body = json!({"state":true,"watch":true});
            http(
                Method::POST,
                &format!("{gw_base}/channels/messaging/ord-ch/query?user_id=ord-a&api_key={DEV_API_KEY}&connection_id={c2}"),
                Some(&body.to_string()),
                &[("authorization", &tok)],
            )
            .await
        })
    };
    // Without ordering, the later watch overtakes the held stop-watching at the gate. With it, the
    // watch waits in the gateway: give it a bounded chance to show up before opening the stop.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while gate.count(query_line) == queries {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    stop.open();
    assert!(stopping.await.unwrap().0.is_success());
    assert!(watching.await.unwrap().0.is_success());
    let stop_at = gate.seen(stop_line);
    let query_at = gate.seen(query_line);
    assert!(
        stop_at < query_at,
        "stop-watching then watch, as decided: {stop_at:?} {query_at:?}"
    );
    gw.send("ord-b", "ord-ch", "still watched").await;
    let ev = loop {
        let ev = next_json(&mut t2).await;
        if ev["type"] == "message.new" || ev["type"] == "notification.message_new" {
            break ev;
        }
    };
    assert_eq!(ev["type"], "message.new", "tab 2 still watches: {ev}");
}

/// Point 8: a tab that does not watch a channel another tab of the user watches gets
/// `notification.message_new` for it (with the channel), as on its own connection; the watching
/// tab gets `message.new`; the sender's own tabs get no notification.
#[tokio::test]
async fn a_tab_not_watching_gets_the_notification() {
    let (gw, _gate, _stop) = gated().await;
    let (mut t1, c1) = gw.connect("nt-a").await;
    let (mut t2, _c2) = gw.connect("nt-a").await;
    let (mut b1, cb) = gw.connect("nt-b").await;
    let (mut b2, _cb2) = gw.connect("nt-b").await;
    gw.watch("nt-a", &c1, "nt-ch", &["nt-a", "nt-b"]).await;
    gw.watch("nt-b", &cb, "nt-ch", &["nt-a", "nt-b"]).await;
    gw.send("nt-b", "nt-ch", "hello").await;
    let ev = until(&mut t1, "message.new").await;
    assert_eq!(ev["message"]["text"], "hello");
    let note = loop {
        let ev = next_json(&mut t2).await;
        assert_ne!(ev["type"], "message.new", "tab 2 does not watch: {ev}");
        if ev["type"] == "notification.message_new" {
            break ev;
        }
    };
    assert_eq!(note["cid"], "messaging:nt-ch");
    assert_eq!(note["message"]["text"], "hello");
    assert_eq!(note["channel"]["cid"], "messaging:nt-ch", "{note}");
    assert!(
        note["channel"]["config"].is_object(),
        "the SDK reads the config: {note}"
    );
    // No notification of one's own message: nt-a's own message, then nt-b's as the sentinel.
    gw.send("nt-a", "nt-ch", "own").await;
    gw.send("nt-b", "nt-ch", "after").await;
    let ev = loop {
        let ev = next_json(&mut t2).await;
        if ev["type"]
            .as_str()
            .is_some_and(|t| t.ends_with("message_new"))
        {
            break ev;
        }
    };
    assert_eq!(
        ev["message"]["text"], "after",
        "not for one's own message: {ev}"
    );
    // nt-b's second tab: nothing for its own "hello", a notification for nt-a's "own".
    let ev = loop {
        let ev = next_json(&mut b2).await;
        if ev["type"]
            .as_str()
            .is_some_and(|t| t.ends_with("message_new"))
        {
            break ev;
        }
    };
    assert_eq!(ev["type"], "notification.message_new", "{ev}");
    assert_eq!(ev["message"]["text"], "own", "{ev}");
    until(&mut b1, "message.new").await;
}

/// Point 5: `channel.hidden` and `channel.visible` carry a cid but go to every tab of the user who
/// hid the channel, watching it or not.
#[tokio::test]
async fn hidden_and_visible_reach_every_tab() {
    let (gw, _gate, _stop) = gated().await;
    let (mut t1, c1) = gw.connect("hd-a").await;
    let (mut t2, _c2) = gw.connect("hd-a").await;
    gw.watch("hd-a", &c1, "hd-ch", &["hd-a", "hd-b"]).await;
    for (action, kind) in [("hide", "channel.hidden"), ("show", "channel.visible")] {
        let url = format!(
            "{}/channels/messaging/hd-ch/{action}?user_id=hd-a&api_key={DEV_API_KEY}",
            gw.base
        );
        let tok = gw.token("hd-a", None);
        let (status, text) = http(Method::POST, &url, Some("{}"), &[("authorization", &tok)]).await;
        assert!(status.is_success(), "{status} {text}");
        for tab in [&mut t1, &mut t2] {
            let ev = until(tab, kind).await;
            assert_eq!(ev["cid"], "messaging:hd-ch", "{ev}");
        }
    }
}

/// Point 6 (presence): another user's presence goes to the tabs that asked for it, not to every
/// tab of the user.
#[tokio::test]
async fn presence_goes_to_the_tabs_that_asked() {
    let (gw, _gate, _stop) = gated().await;
    let (mut t1, c1) = gw.connect("pr-a").await;
    let (mut t2, c2) = gw.connect("pr-a").await;
    gw.watch_with("pr-a", &c1, "pr-ch", &["pr-a", "pr-b"], true)
        .await;
    gw.watch("pr-a", &c2, "pr-ch", &["pr-a", "pr-b"]).await;
    let (_b, _cb) = gw.connect("pr-b").await;
    let ev = until(&mut t1, "user.presence.changed").await;
    assert_eq!(ev["user"]["id"], "pr-b", "{ev}");
    assert_eq!(ev["user"]["online"], true, "{ev}");
    // t2 did not ask: its next event is the sentinel message, no presence change before it.
    gw.send("pr-b", "pr-ch", "sentinel").await;
    let ev = loop {
        let ev = next_json(&mut t2).await;
        if ev["type"] != "user.watching.start" {
            break ev;
        }
    };
    assert_eq!(
        ev["type"], "message.new",
        "no presence for a tab that did not ask: {ev}"
    );
}

/// Sends a message as `user` to `messaging:{channel}` (a reply when `parent` is given); its id.
async fn message(
    gw: &TestGateway,
    user: &str,
    channel: &str,
    text: &str,
    parent: Option<&str>,
) -> String {
    let url = format!(
        "{}/channels/messaging/{channel}/message?user_id={user}&api_key={DEV_API_KEY}",
        gw.base
    );
    let mut msg = json!({"text": text});
    if let Some(p) = parent {
        msg["parent_id"] = json!(p);
    }
    let tok = gw.token(user, None);
    let body = json!({ "message": msg }).to_string();
    let (status, text) = http(Method::POST, &url, Some(&body), &[("authorization", &tok)]).await;
    assert!(status.is_success(), "{status} {text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    v["message"]["id"].as_str().unwrap().to_string()
}

/// Point 6 (threads): `getThread` and `queryThreads` with `watch` subscribe the calling tab to the
/// thread's channel, so replies reach a Threads view.
#[tokio::test]
async fn thread_watches_are_tracked() {
    let (gw, _gate, _stop) = gated().await;
    let (mut t1, c1) = gw.connect("th-a").await;
    let (mut t2, c2) = gw.connect("th-a").await;
    let (_b, cb) = gw.connect("th-b").await;
    gw.watch("th-b", &cb, "th-ch", &["th-a", "th-b"]).await;
    let parent = message(&gw, "th-a", "th-ch", "topic", None).await;
    let tok = gw.token("th-a", None);
    let url = format!(
        "{}/threads/{parent}?watch=true&user_id=th-a&api_key={DEV_API_KEY}&connection_id={c1}",
        gw.base
    );
    let (status, text) = http(Method::GET, &url, None, &[("authorization", &tok)]).await;
    assert!(status.is_success(), "{status} {text}");
    message(&gw, "th-b", "th-ch", "first reply", Some(&parent)).await;
    let ev = until(&mut t1, "message.new").await;
    assert_eq!(ev["message"]["parent_id"], parent.as_str(), "{ev}");

    let url = format!(
        "{}/threads?user_id=th-a&api_key={DEV_API_KEY}&connection_id={c2}",
        gw.base
    );
    let body = json!({"watch": true, "limit": 10}).to_string();
    let (status, text) = http(Method::POST, &url, Some(&body), &[("authorization", &tok)]).await;
    assert!(status.is_success(), "{status} {text}");
    message(&gw, "th-b", "th-ch", "second reply", Some(&parent)).await;
    let ev = until(&mut t2, "message.new").await;
    assert_eq!(ev["message"]["text"], "second reply", "{ev}");
}

/// Starts `POST /channels` (watch) for `user`'s session `conn` in the background.
fn query_channels(
    gw: &TestGateway,
    user: &str,
    conn: &str,
) -> tokio::task::JoinHandle<(hyper::StatusCode, String)> {
    let url = format!(
        "{}/channels?user_id={user}&api_key={DEV_API_KEY}&connection_id={conn}",
        gw.base
    );
    let tok = gw.token(user, None);
    let body = json!({"filter_conditions":{"members":{"$in":[user]}},"watch":true,"state":true});
    tokio::spawn(async move {
        http(
            Method::POST,
            &url,
            Some(&body.to_string()),
            &[("authorization", &tok)],
        )
        .await
    })
}

/// A tab that closes while its watching call is in flight registers nothing; the channels upstream
/// subscribed for it are released as soon as upstream sends one of them (no tab watches it).
#[tokio::test]
async fn a_watch_whose_tab_left_is_released() {
    let (gw, gate, _stop) = gated().await;
    let (t1, c1) = gw.connect("lf-a").await;
    let (_t2, _c2) = gw.connect("lf-a").await;
    let (mut b, cb) = gw.connect("lf-b").await;
    gw.watch("lf-b", &cb, "lf-ch", &["lf-a", "lf-b"]).await;
    let held = gate.arm("POST /channels?", Hold::Response);
    let query = query_channels(&gw, "lf-a", &c1);
    held.wait_hit().await;
    // Upstream has acted on the call: lf-a watches the channel there.
    loop {
        let start = until(&mut b, "user.watching.start").await;
        if start["user"]["id"] == "lf-a" {
            break;
        }
    }
    drop(t1);
    eventually("the tab's session ends", || async {
        gw.metric("stream_edge_sessions_closed_total", &[]).await >= 1.0
    })
    .await;
    held.open();
    let _ = query.await;
    gw.send("lf-b", "lf-ch", "anyone?").await;
    let stop = until(&mut b, "user.watching.stop").await;
    assert_eq!(stop["user"]["id"], "lf-a", "{stop}");
    let released = gw
        .metric(
            "stream_edge_subscriptions_released_total",
            &[("via", "orphan"), ("outcome", "ok")],
        )
        .await;
    assert_eq!(released, 1.0);
}

/// Every event for the tab of the watching call in flight is held in one queue, so per-channel
/// order holds across audiences: a held `message.new` is not overtaken by the
/// `notification.mark_read` another tab's read causes.
#[tokio::test]
async fn held_events_keep_their_order_across_audiences() {
    let (gw, gate, _stop) = gated().await;
    let (mut t1, c1) = gw.connect("or-a").await;
    let (_t2, c2) = gw.connect("or-a").await;
    let (_b, cb) = gw.connect("or-b").await;
    gw.watch("or-b", &cb, "or-ch", &["or-a", "or-b"]).await;
    gw.watch("or-a", &c2, "or-ch", &["or-a", "or-b"]).await;
    let held = gate.arm("POST /channels?", Hold::Response);
    let query = query_channels(&gw, "or-a", &c1);
    held.wait_hit().await;
    gw.send("or-b", "or-ch", "unread").await;
    let url = format!(
        "{}/channels/messaging/or-ch/read?user_id=or-a&api_key={DEV_API_KEY}&connection_id={c2}",
        gw.base
    );
    let tok = gw.token("or-a", None);
    let (status, text) = http(Method::POST, &url, Some("{}"), &[("authorization", &tok)]).await;
    assert!(status.is_success(), "{status} {text}");
    eventually("both events are held", || async {
        gw.metric(
            "stream_edge_watch_held_events_total",
            &[("outcome", "held")],
        )
        .await
            >= 2.0
    })
    .await;
    held.open();
    assert!(query.await.unwrap().0.is_success());
    let mut order = Vec::new();
    while order.len() < 2 {
        let ev = next_json(&mut t1).await;
        let kind = ev["type"].as_str().unwrap_or_default().to_string();
        if kind == "message.new" || kind == "notification.mark_read" {
            order.push(kind);
        }
    }
    assert_eq!(order, ["message.new", "notification.mark_read"]);
}

/// Point 8 for threads: a tab that does not watch the channel gets
/// `notification.thread_message_new` for a reply in a thread the user takes part in, and nothing
/// for a thread the user has no part in.
#[tokio::test]
async fn a_tab_not_watching_hears_of_replies_in_its_threads() {
    let (gw, _gate, _stop) = gated().await;
    let (mut t1, c1) = gw.connect("tr-a").await;
    let (mut t2, _c2) = gw.connect("tr-a").await;
    gw.connect("tr-b").await;
    gw.watch("tr-a", &c1, "tr-ch", &["tr-a", "tr-b", "tr-c"])
        .await;
    let mine = message(&gw, "tr-a", "tr-ch", "my topic", None).await;
    let theirs = message(&gw, "tr-b", "tr-ch", "their topic", None).await;
    message(&gw, "tr-c", "tr-ch", "not my thread", Some(&theirs)).await;
    message(&gw, "tr-b", "tr-ch", "in my thread", Some(&mine)).await;
    let ev = loop {
        let ev = until(&mut t1, "message.new").await;
        if ev["message"]["text"] == "in my thread" {
            break ev;
        }
    };
    assert_eq!(ev["message"]["parent_id"], mine.as_str());
    let note = loop {
        let ev = next_json(&mut t2).await;
        let kind = ev["type"].as_str().unwrap_or_default();
        if kind == "notification.thread_message_new" {
            break ev;
        }
    };
    assert_eq!(
        note["thread_id"],
        mine.as_str(),
        "only the user's own thread: {note}"
    );
    assert_eq!(note["message"]["text"], "in my thread", "{note}");
    assert_eq!(note["parent_author"], "tr-a", "{note}");
    assert_eq!(note["cid"], "messaging:tr-ch", "{note}");
}

/// Point 8 for members: a tab not watching gets `notification.removed_from_channel` (in the shape
/// upstream sends it, without the acting user) when another of its user's tabs watches the
/// channel, and after the removal no `notification.message_new` for the channel any more.
#[tokio::test]
async fn a_removed_member_is_not_notified_any_more() {
    let (gw, _gate, _stop) = gated().await;
    let (_t1, c1) = gw.connect("rm-a").await;
    let (mut t2, _c2) = gw.connect("rm-a").await;
    gw.connect("rm-b").await;
    gw.watch("rm-a", &c1, "rm-ch", &["rm-a", "rm-b"]).await;
    let url = format!(
        "{}/channels/messaging/rm-ch?user_id=rm-b&api_key={DEV_API_KEY}",
        gw.base
    );
    let tok = gw.token("rm-b", None);
    let body = json!({"remove_members": ["rm-a"]}).to_string();
    let (status, text) = http(Method::POST, &url, Some(&body), &[("authorization", &tok)]).await;
    assert!(status.is_success(), "{status} {text}");
    let note = until(&mut t2, "notification.removed_from_channel").await;
    assert_eq!(note["cid"], "messaging:rm-ch", "{note}");
    assert!(note.get("user").is_none(), "no acting user: {note}");
    gw.send("rm-b", "rm-ch", "after removal").await;
    // The sentinel: a message in a channel rm-a still belongs to.
    let (_b2, cb) = gw.connect("rm-b").await;
    gw.watch("rm-b", &cb, "rm-other", &["rm-a", "rm-b"]).await;
    gw.send("rm-b", "rm-other", "sentinel").await;
    let ev = loop {
        let ev = next_json(&mut t2).await;
        if ev["type"] == "notification.message_new" {
            break ev;
        }
    };
    assert_eq!(
        ev["message"]["text"], "sentinel",
        "nothing for a channel left: {ev}"
    );
}
