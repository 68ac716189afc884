//! Which client SDK is on the other end of a `/connect`, recognised once from what the upgrade
//! carries, for the few answers where the official SDKs conflict (sdk-wire-shapes.md, "What a
//! gateway must do"):
//!
//! - the error frame: Swift 5 decodes only `{"type":"connection.error","error":{…}}`, while Unreal
//!   reads an error only from a frame *without* `type` ([`Dialect::typed_errors`]);
//! - closes: Unreal does not reconnect after a clean close, so every close that should make it
//!   reconnect is preceded by an untyped error frame, which it acts on at once
//!   ([`Dialect::error_before_close`]);
//! - heartbeats: Unity's watchdog counts only `health.check` frames, so it gets one every
//!   `ws.health_interval_seconds` however busy the session is ([`Dialect::steady_health`]).
//!
//! Everything else is answered the same for every client, and an unrecognised client is served as
//! the JS SDK always was.

use serde::de::IgnoredAny;
use serde::Deserialize;

/// The SDK family a connection speaks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// `stream-chat` (JS, React Native) and any client not recognised: today's behaviour.
    Js,
    Swift,
    Android,
    Flutter,
    Unity,
    Unreal,
}

/// What an upgrade request says about its client. Header values first, then query values.
#[derive(Debug, Default)]
pub struct Hints<'a> {
    /// `X-Stream-Client`, as a header or query parameter (Flutter JSON-quotes it).
    pub x_stream_client: Option<&'a str>,
    /// `Sec-WebSocket-Protocol` offered (Unreal asks for `wss`).
    pub ws_protocol: Option<&'a str>,
    /// An `Authorization` header on the upgrade (Swift's only token carrier).
    pub auth_header: bool,
    /// An `authorization` query parameter (every SDK but Swift).
    pub auth_query: bool,
    /// The raw `json` payload, decoded from the query.
    pub json: Option<&'a str>,
}

/// The payload keys that tell SDKs apart (values are not looked at).
#[derive(Deserialize, Default)]
struct Keys {
    #[serde(default)]
    user_id: Option<IgnoredAny>,
    #[serde(default)]
    user_token: Option<IgnoredAny>,
}

/// Recognises the client. An `X-Stream-Client` value decides (a name that is no official SDK's
/// is JS); without one (Unity and Unreal send none on the socket), the shapes no other SDK
/// produces: Unreal's `wss` subprotocol or payload without `user_id`, Swift's header-only token,
/// Unity's `user_token`.
pub fn detect(h: &Hints<'_>) -> Dialect {
    if let Some(ua) = h.x_stream_client {
        let ua = ua.trim().trim_matches('"').to_ascii_lowercase();
        let named = [
            // stream-chat-swift, -swiftui, and UIKit's `stream-chat-uikit-client-v4…`.
            ("stream-chat-swift", Dialect::Swift),
            ("stream-chat-uikit", Dialect::Swift),
            // stream-chat-android-…, -compose-…, -ui-components-….
            ("stream-chat-android", Dialect::Android),
            ("stream-chat-dart", Dialect::Flutter),
            ("stream-chat-flutter", Dialect::Flutter),
            ("stream-chat-unity", Dialect::Unity),
            ("stream-chat-unreal", Dialect::Unreal),
            ("stream-chat-js", Dialect::Js),
            ("stream-chat-react", Dialect::Js),
        ];
        // Any other name (this gateway as another's upstream says `stream-edge-v…`, with its
        // token in the header as Swift's) is a client that knows what it sends: served as JS.
        return named
            .iter()
            .find(|(p, _)| ua.starts_with(p))
            .map_or(Dialect::Js, |(_, d)| *d);
    }
    let offers_wss = h
        .ws_protocol
        .is_some_and(|p| p.split(',').any(|t| t.trim().eq_ignore_ascii_case("wss")));
    // A payload that does not parse is refused later; it says nothing about the client.
    let parsed: Option<Keys> = h.json.and_then(|j| serde_json::from_str(j).ok());
    let no_user_id = parsed.as_ref().is_some_and(|k| k.user_id.is_none());
    let keys = parsed.unwrap_or_default();
    if offers_wss || no_user_id {
        return Dialect::Unreal;
    }
    if h.auth_header && !h.auth_query {
        return Dialect::Swift;
    }
    if keys.user_token.is_some() {
        return Dialect::Unity;
    }
    Dialect::Js
}

impl Dialect {
    /// Bounded metric label.
    pub fn label(self) -> &'static str {
        match self {
            Dialect::Js => "js",
            Dialect::Swift => "swift",
            Dialect::Android => "android",
            Dialect::Flutter => "flutter",
            Dialect::Unity => "unity",
            Dialect::Unreal => "unreal",
        }
    }

    /// Every label, to pre-create the metric series.
    pub const LABELS: [&'static str; 6] = ["js", "swift", "android", "flutter", "unity", "unreal"];

    /// Error frames as `{"type":"connection.error",…,"error":{…}}` (Swift 5 decodes no other;
    /// Swift 4.x reads the same frame's `error`: with no `user`, it fails 4.100.1's event decoding
    /// and falls to its error container); everyone else gets the untyped `{"error":{…}}` (Unreal
    /// ignores a typed one).
    pub fn typed_errors(self) -> bool {
        self == Dialect::Swift
    }

    /// An untyped error frame before a close that should make the client reconnect: Unreal
    /// reconnects on the frame, but not on a clean close (it would wait 40 s for its watchdog).
    pub fn error_before_close(self) -> bool {
        self == Dialect::Unreal
    }

    /// A `health.check` every health interval even while events flow: Unity's watchdog counts
    /// nothing else.
    pub fn steady_health(self) -> bool {
        self == Dialect::Unity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_ua(ua: &str) -> Dialect {
        detect(&Hints {
            x_stream_client: Some(ua),
            auth_query: true,
            json: Some(r#"{"user_id":"a"}"#),
            ..Hints::default()
        })
    }

    #[test]
    fn the_client_header_names_the_sdk() {
        assert_eq!(
            with_ua("stream-chat-swift-v4.62.0|app=x|os=iOS 17"),
            Dialect::Swift
        );
        assert_eq!(
            with_ua("stream-chat-android-6.0.0|os=Android 14"),
            Dialect::Android
        );
        assert_eq!(
            with_ua("stream-chat-android-compose-6.4.3"),
            Dialect::Android
        );
        assert_eq!(
            with_ua("stream-chat-uikit-client-v4.22.0|app=A|os=iOS 18.5"),
            Dialect::Swift
        );
        assert_eq!(with_ua("stream-chat-swiftui-v4.60.0"), Dialect::Swift);
        assert_eq!(
            with_ua("stream-chat-react-12.13.1-stream-chat-js-v8.57.6-browser"),
            Dialect::Js
        );
        // Stream's server-side Java SDK is no Android client.
        assert_eq!(with_ua("stream-chat-java-1.29.0"), Dialect::Js);
        assert_eq!(
            with_ua("\"stream-chat-dart-client-android-10.2.0\""),
            Dialect::Flutter
        );
        assert_eq!(with_ua("stream-chat-unity-client-5.0"), Dialect::Unity);
        assert_eq!(with_ua("stream-chat-unreal-0.9"), Dialect::Unreal);
        assert_eq!(with_ua("stream-chat-js-v9.53.0-node"), Dialect::Js);
        assert_eq!(with_ua("stream-chat-javascript-client-node"), Dialect::Js);
        assert_eq!(with_ua("stream-chat-react-native-v6"), Dialect::Js);
        assert_eq!(with_ua("stream-edge-tests"), Dialect::Js);
        // This gateway as another gateway's upstream: header token only, but it names itself.
        let chained = detect(&Hints {
            x_stream_client: Some("stream-edge-v0.1.0"),
            auth_header: true,
            json: Some(r#"{"user_id":"a","user_details":{"id":"a"}}"#),
            ..Hints::default()
        });
        assert_eq!(chained, Dialect::Js);
    }

    #[test]
    fn without_a_client_header_the_shape_decides() {
        // Unreal: only user_details, and the `wss` subprotocol.
        let unreal = detect(&Hints {
            auth_query: true,
            json: Some(r#"{"user_details":{"id":"a"}}"#),
            ..Hints::default()
        });
        assert_eq!(unreal, Dialect::Unreal);
        let unreal = detect(&Hints {
            ws_protocol: Some("wss"),
            auth_query: true,
            json: Some(r#"{"user_id":"a"}"#),
            ..Hints::default()
        });
        assert_eq!(unreal, Dialect::Unreal);
        // Swift: the token in the header only.
        let swift = detect(&Hints {
            auth_header: true,
            json: Some(r#"{"user_id":"a","user_details":{"id":"a"}}"#),
            ..Hints::default()
        });
        assert_eq!(swift, Dialect::Swift);
        // Unity: user_token in the payload, no client header.
        let unity = detect(&Hints {
            auth_query: true,
            json: Some(r#"{"user_id":"a","user_details":{"id":"a"},"user_token":"t"}"#),
            ..Hints::default()
        });
        assert_eq!(unity, Dialect::Unity);
    }

    #[test]
    fn the_js_sdk_and_anything_unclear_stay_js() {
        // The JS SDK's own shape: token in the query, user_id, its client header.
        let js = detect(&Hints {
            x_stream_client: Some("stream-chat-js-v9.53.0-node"),
            auth_query: true,
            json: Some(r#"{"user_id":"a","user_details":{"id":"a"},"client_request_id":"r"}"#),
            ..Hints::default()
        });
        assert_eq!(js, Dialect::Js);
        // Header and query token both (a gateway upstream of another), broken JSON, no JSON.
        for h in [
            Hints {
                auth_header: true,
                auth_query: true,
                json: Some(r#"{"user_id":"a"}"#),
                ..Hints::default()
            },
            Hints {
                auth_query: true,
                json: Some("{not json"),
                ..Hints::default()
            },
            Hints::default(),
        ] {
            assert_eq!(detect(&h), Dialect::Js, "{h:?}");
        }
    }

    #[test]
    fn only_the_conflicting_answers_differ() {
        assert!(Dialect::Swift.typed_errors());
        assert!(!Dialect::Unreal.typed_errors());
        assert!(!Dialect::Js.typed_errors() && !Dialect::Js.error_before_close());
        assert!(!Dialect::Js.steady_health());
        assert!(Dialect::Unreal.error_before_close());
        assert!(Dialect::Unity.steady_health());
    }
}
