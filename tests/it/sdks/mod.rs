//! Every official native SDK through the gateway (issue 16): a wire-level model of each SDK's
//! socket ([`model`] says what it sends and does, [`wire`] drives it) runs the same journeys
//! ([`scenarios`]) over TLS, and each SDK's file asserts that SDK's own outcome and the shapes
//! only it sends; [`js`] pins the JS SDK's answers where the dialects differ.

mod flutter;
mod js;
mod kotlin;
mod model;
mod scenarios;
mod swift;
mod unity;
mod unreal;
mod wire;
