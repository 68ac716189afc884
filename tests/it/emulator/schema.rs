//! Validation against Stream's OpenAPI spec
//! (`shared/reference/stream-api/chat-openapi-clientside.yaml` beside the
//! repository, or `$STREAM_EDGE_OPENAPI`; see `support::openapi_spec`: the
//! spec is not committed here, and without it these tests skip). The YAML's
//! `components` become a JSON Schema (2020-12) document in which
//! `#/components/schemas/X` refs resolve; OpenAPI 3.0 `nullable: true` is
//! rewritten to a `null` type alternative, and discriminated `oneOf`s to
//! `if type == K then $ref` conditionals. Events are checked against the
//! schema the spec's `WSEvent` discriminator maps their `type` to.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use jsonschema::{Draft, Validator};
use serde_json::{json, Value};

/// The whole spec as JSON, parsed once.
pub fn spec() -> &'static Value {
    static SPEC: OnceLock<Value> = OnceLock::new();
    SPEC.get_or_init(|| {
        // invariant: tests check `skip_without_openapi` before validating anything.
        let path = crate::support::openapi_spec().expect("the OpenAPI spec (checked first)");
        let text = std::fs::read_to_string(path).expect("read the OpenAPI spec");
        let yaml: serde_yaml::Value = serde_yaml::from_str(&text).expect("parse the OpenAPI spec");
        serde_json::to_value(yaml).expect("spec as JSON")
    })
}

fn components() -> &'static Value {
    static COMPONENTS: OnceLock<Value> = OnceLock::new();
    COMPONENTS.get_or_init(|| {
        let mut components = spec()["components"].clone();
        nullable_to_null_type(&mut components);
        discriminators_to_conditionals(&mut components);
        components
    })
}

/// A `oneOf` with a discriminator cannot be checked as plain JSON Schema
/// (open event schemas overlap, so several branches match). Translate the
/// mapping into `if type == K then $ref`, with `*` for unmapped types.
fn discriminators_to_conditionals(v: &mut Value) {
    match v {
        Value::Object(map) => {
            let mapping = map
                .get("discriminator")
                .filter(|d| d["propertyName"] == "type")
                .and_then(|d| d["mapping"].as_object())
                .cloned();
            if let (Some(mapping), true) = (mapping, map.contains_key("oneOf")) {
                // `discriminator` stays: validators ignore it and
                // `event_schema` reads its mapping.
                map.remove("oneOf");
                let known: Vec<&String> = mapping.keys().filter(|k| *k != "*").collect();
                let mut branches: Vec<Value> = known
                    .iter()
                    .map(|k| json!({"if": {"properties": {"type": {"const": k}}, "required": ["type"]}, "then": {"$ref": mapping[*k]}}))
                    .collect();
                if let Some(fallback) = mapping.get("*") {
                    branches.push(json!({"if": {"not": {"properties": {"type": {"enum": known}}}}, "then": {"$ref": fallback}}));
                }
                map.insert("allOf".into(), Value::Array(branches));
            }
            map.values_mut().for_each(discriminators_to_conditionals);
        }
        Value::Array(items) => items.iter_mut().for_each(discriminators_to_conditionals),
        _ => {}
    }
}

/// OpenAPI 3.0 `nullable: true` → JSON Schema `type: [T, "null"]`.
fn nullable_to_null_type(v: &mut Value) {
    match v {
        Value::Object(map) => {
            if map.remove("nullable") == Some(Value::Bool(true)) {
                if let Some(Value::String(t)) = map.get("type").cloned() {
                    map.insert("type".into(), json!([t, "null"]));
                }
            }
            map.values_mut().for_each(nullable_to_null_type);
        }
        Value::Array(items) => items.iter_mut().for_each(nullable_to_null_type),
        _ => {}
    }
}

fn validator(name: &str) -> Arc<Validator> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<Validator>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(v) = cache.lock().expect("cache").get(name) {
        return v.clone();
    }
    let comps = components();
    assert!(
        comps["schemas"].get(name).is_some(),
        "schema {name} is not in the spec"
    );
    let doc = json!({ "$ref": format!("#/components/schemas/{name}"), "components": comps });
    let built = jsonschema::options()
        .with_draft(Draft::Draft202012)
        .should_validate_formats(true)
        .build(&doc)
        .unwrap_or_else(|e| panic!("compile schema {name}: {e}"));
    let built = Arc::new(built);
    cache
        .lock()
        .expect("cache")
        .insert(name.to_owned(), built.clone());
    built
}

/// Every way `value` breaks schema `name` (empty when it fits).
pub fn violations(name: &str, value: &Value) -> Vec<String> {
    validator(name)
        .iter_errors(value)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect()
}

/// Panics with every violation if `value` does not satisfy schema `name`.
pub fn validate(name: &str, value: &Value) {
    let errors = violations(name, value);
    assert!(
        errors.is_empty(),
        "{name} violations:\n{}\nin {value:#}",
        errors.join("\n")
    );
}

/// The schema the spec maps an event `type` to (custom types map to `*`).
pub fn event_schema(kind: &str) -> String {
    let mapping = &components()["schemas"]["WSEvent"]["discriminator"]["mapping"];
    let target = mapping
        .get(kind)
        .or_else(|| mapping.get("*"))
        .and_then(Value::as_str)
        .expect("WSEvent mapping");
    target.rsplit('/').next().unwrap_or(target).to_owned()
}

/// Validates an event against its schema by type.
pub fn validate_event(event: &Value) {
    let kind = event["type"].as_str().expect("events have a string type");
    validate(&event_schema(kind), event);
}

#[test]
fn known_event_types_map_to_their_schemas() {
    if crate::support::skip_without_openapi(
        "emulator::schema::known_event_types_map_to_their_schemas",
    ) {
        return;
    }
    assert_eq!(event_schema("health.check"), "HealthCheckEvent");
    assert_eq!(event_schema("message.new"), "MessageNewEvent");
    assert_eq!(
        event_schema("notification.mark_read"),
        "NotificationMarkReadEvent"
    );
    assert_eq!(event_schema("user.watching.stop"), "UserWatchingStopEvent");
    assert_eq!(event_schema("poke"), "CustomEvent");
    // Every server event type the emulator sends has a schema of its own: a misspelt type would
    // fall through to the lax `CustomEvent` and pass validation unnoticed.
    for (kind, schema) in [
        ("user.presence.changed", "UserPresenceChangedEvent"),
        ("user.updated", "UserUpdatedEvent"),
        ("channel.hidden", "ChannelHiddenEvent"),
        ("channel.visible", "ChannelVisibleEvent"),
        ("channel.updated", "ChannelUpdatedEvent"),
        ("member.added", "MemberAddedEvent"),
        ("member.removed", "MemberRemovedEvent"),
        (
            "notification.added_to_channel",
            "NotificationAddedToChannelEvent",
        ),
        (
            "notification.removed_from_channel",
            "NotificationRemovedFromChannelEvent",
        ),
        ("notification.message_new", "NotificationNewMessageEvent"),
        (
            "notification.thread_message_new",
            "NotificationThreadMessageNewEvent",
        ),
        ("thread.updated", "ThreadUpdatedEvent"),
    ] {
        assert_eq!(event_schema(kind), schema, "{kind}");
    }
}

#[test]
fn validation_rejects_a_bad_body() {
    if crate::support::skip_without_openapi("emulator::schema::validation_rejects_a_bad_body") {
        return;
    }
    let bad = json!({"code": "four", "message": 1});
    let violations = validator("APIError").iter_errors(&bad).count();
    assert!(violations > 0);
    // The discriminator picks the branch: a typing event without `custom` fails.
    let typing = json!({"event": {"type": "typing.start", "created_at": "2024-01-01T00:00:00Z"}, "duration": "1ms"});
    assert!(!validator("EventResponse").is_valid(&typing));
    let dated = json!({"type": "health.check", "connection_id": "x", "created_at": "yesterday", "custom": {}});
    assert!(
        !validator("HealthCheckEvent").is_valid(&dated),
        "date-time formats are checked"
    );
}
