//! Which response schema Stream's client-side OpenAPI spec gives a request: the spec's `paths`
//! (templates such as `/channels/{type}/{id}/query`) matched against a concrete method and path.
//! The validating recorder (`recorder`) uses it to check every upstream answer the real SDK gets.

use std::collections::HashMap;

use serde_json::Value;

/// One operation of the spec: a method on a path template.
pub struct Route {
    pub method: String,
    /// The template as the spec spells it, e.g. `/messages/{id}/reaction`.
    pub template: String,
    /// `None` for a `{param}` segment.
    segments: Vec<Option<String>>,
    /// Response schema name by status code.
    responses: HashMap<u16, String>,
}

impl Route {
    /// The schema a response with `status` must fit: the spec's own for that status, else its
    /// success schema for any 2xx, else `APIError` for an error.
    pub fn schema_for(&self, status: u16) -> Option<String> {
        if let Some(s) = self.responses.get(&status) {
            return Some(s.clone());
        }
        if status >= 400 {
            return Some("APIError".into());
        }
        let mut ok: Vec<_> = self
            .responses
            .iter()
            .filter(|(code, _)| (200..300).contains(*code))
            .collect();
        ok.sort_by_key(|(code, _)| **code);
        ok.first().map(|(_, s)| (*s).clone())
    }

    fn literals(&self) -> usize {
        self.segments.iter().filter(|s| s.is_some()).count()
    }

    fn matches(&self, method: &str, segs: &[&str]) -> bool {
        self.method.eq_ignore_ascii_case(method)
            && self.segments.len() == segs.len()
            && self
                .segments
                .iter()
                .zip(segs)
                .all(|(t, s)| !s.is_empty() && t.as_deref().is_none_or(|lit| lit == *s))
    }
}

/// Every operation in the spec.
pub struct Routes(Vec<Route>);

impl Routes {
    pub fn from_spec(spec: &Value) -> Self {
        let mut routes = Vec::new();
        let Some(paths) = spec["paths"].as_object() else {
            return Self(routes);
        };
        for (template, ops) in paths {
            let segments: Vec<Option<String>> = split(template)
                .map(|s| (!s.starts_with('{')).then(|| s.to_owned()))
                .collect();
            for method in ["get", "post", "put", "patch", "delete"] {
                let Some(responses) = ops[method]["responses"].as_object() else {
                    continue;
                };
                let responses = responses
                    .iter()
                    .filter_map(|(code, r)| {
                        let schema = r["content"]["application/json"]["schema"]["$ref"].as_str()?;
                        Some((code.parse().ok()?, schema.rsplit('/').next()?.to_owned()))
                    })
                    .collect();
                routes.push(Route {
                    method: method.to_uppercase(),
                    template: template.clone(),
                    segments: segments.clone(),
                    responses,
                });
            }
        }
        Self(routes)
    }

    /// The operation `method path` is, preferring the template with the most literal segments
    /// (`/polls/query` over `/polls/{poll_id}`).
    pub fn find(&self, method: &str, path: &str) -> Option<&Route> {
        let segs: Vec<&str> = split(path).collect();
        self.0
            .iter()
            .filter(|r| r.matches(method, &segs))
            .max_by_key(|r| r.literals())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn all(&self) -> impl Iterator<Item = &Route> {
        self.0.iter()
    }
}

fn split(path: &str) -> impl Iterator<Item = &str> {
    path.trim_matches('/').split('/')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_most_literal_template_wins_and_statuses_map() {
        let spec = json!({"paths": {
            "/polls/{poll_id}": {"get": {"responses": {"200": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/PollResponse"}}}}}}},
            "/polls/query": {"post": {"responses": {"201": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/QueryPollsResponse"}}}}}}},
            "/channels/{type}/{id}/query": {"post": {"responses": {"200": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ChannelStateResponse"}}}}}}}
        }});
        let routes = Routes::from_spec(&spec);
        assert_eq!(routes.len(), 3);
        let q = routes
            .find("POST", "/polls/query")
            .map(|r| r.template.as_str());
        assert_eq!(q, Some("/polls/query"));
        let p = routes
            .find("GET", "/polls/query")
            .map(|r| r.template.as_str());
        assert_eq!(p, Some("/polls/{poll_id}"));
        let c = routes
            .find("POST", "/channels/messaging/general/query")
            .and_then(|r| r.schema_for(201));
        assert_eq!(c.as_deref(), Some("ChannelStateResponse"));
        let e = routes
            .find("POST", "/channels/messaging/x/query")
            .and_then(|r| r.schema_for(404));
        assert_eq!(e.as_deref(), Some("APIError"));
        assert!(routes.find("POST", "/channels/messaging//query").is_none());
        assert!(routes.find("GET", "/channeltypes/messaging").is_none());
    }
}
