//! JSON shapes of polls (`PollResponseData`, `PollOptionResponseData`, `PollVoteResponseData`)
//! per the OpenAPI schemas: counts and latest votes per option, latest answers, and the viewer's
//! own votes; an anonymous poll names no voter but the viewer.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::render::{flatten, ts, user};
use crate::store::{AppData, Poll, PollOption, PollVote};

/// Votes listed per option in `latest_votes_by_option`, and answers in `latest_answers`.
const LATEST_VOTES: usize = 10;

/// `PollOptionResponseData`.
pub(crate) fn option(o: &PollOption) -> Value {
    let mut map = Map::new();
    map.insert("id".into(), json!(o.id));
    map.insert("text".into(), json!(o.text));
    flatten(&mut map, &o.custom);
    map.insert("custom".into(), Value::Object(o.custom.clone()));
    Value::Object(map)
}

/// `PollVoteResponseData`; the voter is left out of an anonymous poll's votes of others.
pub(crate) fn vote(app: &AppData, p: &Poll, v: &PollVote, viewer: Option<&str>) -> Value {
    let mut map = Map::new();
    map.insert("id".into(), json!(v.id));
    map.insert("poll_id".into(), json!(p.id));
    map.insert(
        "option_id".into(),
        json!(v.option_id.clone().unwrap_or_default()),
    );
    map.insert("created_at".into(), json!(ts(v.created_at)));
    map.insert("updated_at".into(), json!(ts(v.updated_at)));
    if let Some(text) = &v.answer_text {
        map.insert("answer_text".into(), json!(text));
        map.insert("is_answer".into(), json!(true));
    }
    if p.voting_visibility != "anonymous" || viewer == Some(v.user_id.as_str()) {
        map.insert("user_id".into(), json!(v.user_id));
        map.insert("user".into(), user(app, &v.user_id));
    }
    Value::Object(map)
}

/// `PollResponseData` as `viewer` sees it (`own_votes`); events, shared by every watcher, carry none.
pub(crate) fn poll(app: &AppData, p: &Poll, viewer: Option<&str>) -> Value {
    let mut newest: Vec<&PollVote> = p.votes.iter().collect();
    newest.sort_by_key(|r| std::cmp::Reverse(r.created_at));
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut latest: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    let mut answers = Vec::new();
    let mut answers_count = 0;
    let mut own = Vec::new();
    for v in &newest {
        if viewer == Some(v.user_id.as_str()) {
            own.push(vote(app, p, v, viewer));
        }
        match &v.option_id {
            Some(o) => {
                *counts.entry(o.as_str()).or_default() += 1;
                let list = latest.entry(o.as_str()).or_default();
                if list.len() < LATEST_VOTES {
                    list.push(vote(app, p, v, viewer));
                }
            }
            None => {
                answers_count += 1;
                if answers.len() < LATEST_VOTES {
                    answers.push(vote(app, p, v, viewer));
                }
            }
        }
    }
    let vote_count: usize = counts.values().sum();
    let mut map = Map::new();
    map.insert("id".into(), json!(p.id));
    map.insert("name".into(), json!(p.name));
    map.insert("description".into(), json!(p.description));
    map.insert("voting_visibility".into(), json!(p.voting_visibility));
    map.insert("enforce_unique_vote".into(), json!(p.enforce_unique_vote));
    map.insert(
        "allow_user_suggested_options".into(),
        json!(p.allow_user_suggested_options),
    );
    map.insert("allow_answers".into(), json!(p.allow_answers));
    if let Some(n) = p.max_votes_allowed {
        map.insert("max_votes_allowed".into(), json!(n));
    }
    map.insert("is_closed".into(), json!(p.is_closed));
    map.insert("vote_count".into(), json!(vote_count));
    map.insert("answers_count".into(), json!(answers_count));
    map.insert(
        "options".into(),
        Value::Array(p.options.iter().map(option).collect()),
    );
    map.insert("vote_counts_by_option".into(), json!(counts));
    map.insert("latest_votes_by_option".into(), json!(latest));
    map.insert("latest_answers".into(), Value::Array(answers));
    map.insert("own_votes".into(), Value::Array(own));
    map.insert("created_by_id".into(), json!(p.created_by));
    map.insert("created_by".into(), user(app, &p.created_by));
    map.insert("created_at".into(), json!(ts(p.created_at)));
    map.insert("updated_at".into(), json!(ts(p.updated_at)));
    flatten(&mut map, &p.custom);
    map.insert("custom".into(), Value::Object(p.custom.clone()));
    Value::Object(map)
}
