//! Every official native SDK through the gateway (issue 16): a wire-level model of each SDK's
//! socket ([`wire`]) runs the same journeys ([`scenarios`]) over TLS, and each SDK's file asserts
//! that SDK's own outcome and the shapes only it sends.

mod flutter;
mod kotlin;
mod scenarios;
mod swift;
mod unity;
mod unreal;
mod wire;
