//! The filter operators Stream's query routes share (`queryChannels`, `queryMembers`,
//! `queryUsers`, drafts and reminders): one value against a condition, which is a plain value
//! (equality) or an object of `$eq`, `$ne`, `$in`, `$nin`, `$exists`, `$gt`, `$gte`, `$lt`,
//! `$lte`, `$autocomplete`, `$q` and `$contains`. Timestamps compare as instants, not as strings.

use std::cmp::Ordering;

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::error::ApiError;

/// Items one `$in` / `$nin` list may hold.
pub(crate) const MAX_FILTER_LIST: usize = 1_000;

/// Whether `actual` (absent = `None`) satisfies `cond`.
pub(crate) fn value_match(actual: Option<&Value>, cond: &Value) -> Result<bool, ApiError> {
    let Some(ops) = cond
        .as_object()
        .filter(|o| !o.is_empty() && o.keys().all(|k| k.starts_with('$')))
    else {
        return Ok(actual.is_some_and(|a| equal(a, cond)));
    };
    for (op, arg) in ops {
        let ok = match op.as_str() {
            "$eq" => actual.is_some_and(|a| equal(a, arg)),
            "$ne" => !actual.is_some_and(|a| equal(a, arg)),
            "$in" => list(arg, op)?
                .iter()
                .any(|v| actual.is_some_and(|a| equal(a, v))),
            "$nin" => !list(arg, op)?
                .iter()
                .any(|v| actual.is_some_and(|a| equal(a, v))),
            "$exists" => actual.is_some_and(|a| !a.is_null()) == (arg == &Value::Bool(true)),
            "$gt" => compare(actual, arg) == Some(Ordering::Greater),
            "$gte" => matches!(
                compare(actual, arg),
                Some(Ordering::Greater | Ordering::Equal)
            ),
            "$lt" => compare(actual, arg) == Some(Ordering::Less),
            "$lte" => matches!(compare(actual, arg), Some(Ordering::Less | Ordering::Equal)),
            "$autocomplete" | "$q" => {
                let needle = arg
                    .as_str()
                    .ok_or_else(|| ApiError::input(format!("{op} needs a string")))?;
                actual
                    .and_then(Value::as_str)
                    .is_some_and(|a| autocomplete(a, needle))
            }
            "$contains" => actual
                .and_then(Value::as_array)
                .is_some_and(|items| items.iter().any(|i| equal(i, arg))),
            _ => return Err(ApiError::input(format!("unsupported filter operator {op}"))),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// A list argument (`$in`, `$nin`), bounded.
pub(crate) fn list<'a>(arg: &'a Value, op: &str) -> Result<&'a [Value], ApiError> {
    let items = arg
        .as_array()
        .ok_or_else(|| ApiError::input(format!("{op} needs an array")))?;
    if items.len() > MAX_FILTER_LIST {
        return Err(ApiError::input(format!(
            "{op} takes at most {MAX_FILTER_LIST} values"
        )));
    }
    Ok(items)
}

/// `$autocomplete`: some word of `haystack` starts with `needle`, ignoring case.
fn autocomplete(haystack: &str, needle: &str) -> bool {
    let needle = needle.to_lowercase();
    let hay = haystack.to_lowercase();
    hay.starts_with(&needle)
        || hay
            .split(|c: char| !c.is_alphanumeric())
            .any(|w| w.starts_with(&needle))
}

/// Equal values; two timestamps are equal as instants.
fn equal(a: &Value, b: &Value) -> bool {
    a == b || compare(Some(a), b) == Some(Ordering::Equal)
}

/// Orders numbers as numbers, timestamps as instants, other strings as strings.
fn compare(actual: Option<&Value>, arg: &Value) -> Option<Ordering> {
    match (actual?, arg) {
        (Value::Number(a), Value::Number(b)) => a.as_f64()?.partial_cmp(&b.as_f64()?),
        (Value::String(a), Value::String(b)) => match (instant(a), instant(b)) {
            (Some(a), Some(b)) => Some(a.cmp(&b)),
            _ => Some(a.cmp(b)),
        },
        (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
        _ => None,
    }
}

fn instant(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn operators_compare_numbers_instants_and_words() {
        let t = json!("2026-01-01T10:00:00.5Z");
        assert!(value_match(Some(&t), &json!({"$gt": "2026-01-01T10:00:00Z"})).unwrap_or(false));
        assert!(value_match(Some(&json!(3)), &json!({"$gte": 3, "$lt": 4})).unwrap_or(false));
        assert!(value_match(
            Some(&json!("Ada Lovelace")),
            &json!({"$autocomplete": "lov"})
        )
        .unwrap_or(false));
        assert!(!value_match(None, &json!({"$exists": true})).unwrap_or(true));
        assert!(value_match(None, &json!({"$ne": 1})).unwrap_or(false));
        assert!(value_match(Some(&json!(1)), &json!({"$bogus": 1})).is_err());
    }
}
