//! The checkers for tests and fuzzing, never on the request path: [`leaks`] finds hidden state
//! left in a parsed body, [`reference`] computes the expected output on a tree.

use super::types::*;
use crate::privacy::filter::Indicator;

/// The carriers of hidden users' state left in a parsed body, each described in one line; empty
/// when the body is clean. An independent implementation of the carrier table over
/// `serde_json::Value`, for tests and fuzzing (a parsed body is bounded by serde_json's depth
/// limit, so it is never used on the request path).
pub fn leaks(
    v: &serde_json::Value,
    shape: Shape,
    hidden: &dyn Fn(&str, Indicator) -> bool,
) -> Vec<String> {
    use serde_json::Value;
    type Map = serde_json::Map<String, Value>;
    fn ids(o: &Map) -> Vec<&str> {
        let mut ids = Vec::new();
        if let Some(Value::String(id)) = o.get("user").and_then(|u| u.get("id")) {
            ids.push(id.as_str());
        }
        if let Some(Value::String(id)) = o.get("user_id") {
            ids.push(id.as_str());
        }
        ids
    }
    struct Check<'h> {
        hidden: &'h dyn Fn(&str, Indicator) -> bool,
        found: Vec<String>,
    }
    impl Check<'_> {
        fn any(&self, ids: &[&str], ind: Indicator) -> bool {
            ids.is_empty() || ids.iter().any(|u| (self.hidden)(u, ind))
        }
        fn reads(&mut self, v: Option<&Value>, path: &str) {
            let Some(Value::Array(entries)) = v else {
                return;
            };
            for (i, e) in entries.iter().enumerate() {
                let Some(o) = e.as_object() else { continue };
                let ids = ids(o);
                if self.any(&ids, Indicator::Read) {
                    self.found.push(format!("{path}.read[{i}] of {ids:?}"));
                } else if self.any(&ids, Indicator::Delivery)
                    && (o.contains_key("last_delivered_at")
                        || o.contains_key("last_delivered_message_id"))
                {
                    self.found
                        .push(format!("{path}.read[{i}] delivery of {ids:?}"));
                }
            }
        }
        fn thread(&mut self, v: Option<&Value>, path: &str) {
            let Some(Value::Object(t)) = v else { return };
            self.reads(t.get("read"), path);
            if let Some(Value::Array(ps)) = t.get("thread_participants") {
                for (i, p) in ps.iter().enumerate() {
                    let Some(o) = p.as_object() else { continue };
                    if o.contains_key("last_read_at") && self.any(&ids(o), Indicator::Read) {
                        self.found.push(format!(
                            "{path}.thread_participants[{i}].last_read_at of {:?}",
                            ids(o)
                        ));
                    }
                }
            }
        }
        fn threads(&mut self, v: Option<&Value>, path: &str) {
            if let Some(Value::Array(ts)) = v {
                for (i, t) in ts.iter().enumerate() {
                    self.thread(Some(t), &format!("{path}.threads[{i}]"));
                }
            }
        }
        fn channels(&mut self, v: Option<&Value>, path: &str) {
            if let Some(Value::Array(cs)) = v {
                for (i, c) in cs.iter().enumerate() {
                    let p = format!("{path}.channels[{i}]");
                    self.reads(c.get("read"), &p);
                    self.threads(c.get("threads"), &p);
                }
            }
        }
        fn event(&mut self, v: &Value, path: &str) {
            self.thread(v.get("thread"), &format!("{path}.thread"));
        }
        fn response(&mut self, o: &Map) {
            self.reads(o.get("read"), "");
            self.threads(o.get("threads"), "");
            self.thread(o.get("thread"), ".thread");
            self.channels(o.get("channels"), "");
            if let Some(Value::Object(groups)) = o.get("groups") {
                for (name, g) in groups {
                    self.channels(g.get("channels"), &format!(".groups.{name}"));
                }
            }
            if let Some(e) = o.get("event") {
                self.event(e, ".event");
            }
            if let Some(Value::Array(events)) = o.get("events") {
                for (i, e) in events.iter().enumerate() {
                    let Some(eo) = e.as_object() else { continue };
                    let kind = eo.get("type").and_then(Value::as_str).unwrap_or("");
                    if let Some(ind) = crate::privacy::filter::indicator(kind) {
                        if self.any(&ids(eo), ind) {
                            self.found
                                .push(format!(".events[{i}] {kind} of {:?}", ids(eo)));
                        }
                    }
                    self.event(e, &format!(".events[{i}]"));
                }
            }
        }
    }
    let mut check = Check {
        hidden,
        found: Vec::new(),
    };
    match (shape, v) {
        (Shape::Response, Value::Object(o)) => check.response(o),
        (Shape::Event, v) => check.event(v, ""),
        _ => {}
    }
    check.found
}

/// The body the carrier table asks for, computed on a parsed tree: `v` without the carriers of
/// hidden users. The reference the rewriter is compared with in tests and fuzzing (where keys are
/// not duplicated: a tree keeps only the last of duplicated keys, the rewriter looks at all).
pub fn reference(
    v: &serde_json::Value,
    shape: Shape,
    hidden: &dyn Fn(&str, Indicator) -> bool,
) -> serde_json::Value {
    use serde_json::Value;
    type Map = serde_json::Map<String, Value>;
    let ids = |o: &Map| -> Vec<String> {
        let mut ids = Vec::new();
        if let Some(Value::String(id)) = o.get("user").and_then(|u| u.get("id")) {
            ids.push(id.clone());
        }
        if let Some(Value::String(id)) = o.get("user_id") {
            ids.push(id.clone());
        }
        ids
    };
    let any = |ids: &[String], ind: Indicator| ids.is_empty() || ids.iter().any(|u| hidden(u, ind));
    let reads = |v: &mut Value| {
        if let Value::Array(entries) = v {
            entries.retain(|e| match e.as_object() {
                Some(o) => !any(&ids(o), Indicator::Read),
                None => true,
            });
            for e in entries.iter_mut() {
                if let Some(o) = e.as_object_mut() {
                    if any(&ids(o), Indicator::Delivery) {
                        o.remove("last_delivered_at");
                        o.remove("last_delivered_message_id");
                    }
                }
            }
        }
    };
    let thread = |v: &mut Value| {
        if let Value::Object(t) = v {
            if let Some(r) = t.get_mut("read") {
                reads(r);
            }
            if let Some(Value::Array(ps)) = t.get_mut("thread_participants") {
                for p in ps {
                    if let Some(o) = p.as_object_mut() {
                        if o.contains_key("last_read_at") && any(&ids(o), Indicator::Read) {
                            o.remove("last_read_at");
                        }
                    }
                }
            }
        }
    };
    let event = |v: &mut Value| {
        if let Some(t) = v.get_mut("thread") {
            thread(t);
        }
    };
    let channels = |v: &mut Value| {
        if let Value::Array(cs) = v {
            for c in cs {
                if let Some(r) = c.get_mut("read") {
                    reads(r);
                }
                if let Some(Value::Array(ts)) = c.get_mut("threads") {
                    ts.iter_mut().for_each(thread);
                }
            }
        }
    };
    let mut v = v.clone();
    match (shape, &mut v) {
        (Shape::Response, Value::Object(o)) => {
            if let Some(r) = o.get_mut("read") {
                reads(r);
            }
            if let Some(Value::Array(ts)) = o.get_mut("threads") {
                ts.iter_mut().for_each(thread);
            }
            if let Some(t) = o.get_mut("thread") {
                thread(t);
            }
            if let Some(c) = o.get_mut("channels") {
                channels(c);
            }
            if let Some(Value::Object(groups)) = o.get_mut("groups") {
                for g in groups.values_mut() {
                    if let Some(c) = g.get_mut("channels") {
                        channels(c);
                    }
                }
            }
            if let Some(e) = o.get_mut("event") {
                event(e);
            }
            if let Some(Value::Array(events)) = o.get_mut("events") {
                events.retain(|e| {
                    let Some(o) = e.as_object() else { return true };
                    let kind = o.get("type").and_then(Value::as_str).unwrap_or("");
                    crate::privacy::filter::indicator(kind).is_none_or(|ind| !any(&ids(o), ind))
                });
                events.iter_mut().for_each(event);
            }
        }
        (Shape::Event, v) => event(v),
        _ => {}
    }
    v
}
