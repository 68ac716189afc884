//! stream-edge: the edge gateway in front of Stream Chat.
//!
//! The request path, and the module that owns each step (each layer imports only the layers
//! below it; README, "Architecture"):
//!
//! ```text
//! client ──► front (accept loop · lean long-poll front ⇄ hyper)
//!              ├──► transport::ws / transport::longpoll ──► auth ──► session (hub per user) ──┐
//!              └──► rest (reverse proxy: connection_id rewrite, watches, privacy rewriting) ──┴──► upstream ──► Stream API
//!                                                                                                             (or emulator)
//! ```
//!
//! Events flow back from `upstream` through the user's `session::Hub`, which routes each one to
//! the sessions watching its channel after the `privacy` filter. `state` is what every connection
//! task shares; `http` the body, JSON and CORS helpers; `gateway` wires it all; `config`,
//! `admin`, `metrics`, `limits`, `error` and `shutdown` serve every step. With several replicas,
//! `cluster` sits between `front` and the handlers: a call for another replica's session is
//! forwarded to its owner (`front::peer` serves what peers forward).

pub mod admin;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod error;
pub mod front;
pub mod gateway;
pub mod http;
pub mod limits;
pub mod metrics;
pub mod privacy;
pub mod rest;
pub mod session;
pub mod shutdown;
pub mod state;
pub mod tls;
pub mod transport;
pub mod upstream;
