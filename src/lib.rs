//! stream-edge: the edge gateway in front of Stream Chat.
//!
//! The request path, and the module that owns each step:
//!
//! ```text
//! client ──► listener ──► transport::ws / transport::longpoll ──► auth ──► session (hub per user)
//!                 │                                                          │
//!                 └──► rest (reverse proxy, connection_id rewrite, watches) ─┴──► upstream ──► Stream API
//!                                                                                 (or emulator)
//! ```
//!
//! Events flow back from `upstream` through the user's `session::Hub`, which routes each one to
//! the sessions watching its channel after the `privacy` filter. `config`, `admin`, `metrics` and
//! `shutdown` serve every step.

pub mod admin;
pub mod auth;
pub mod config;
pub mod error;
pub mod gateway;
pub mod limits;
pub mod listener;

pub mod metrics;
pub mod privacy;

pub mod rest;
pub mod session;
pub mod shutdown;
pub mod tls;
pub mod transport;
pub mod upstream;
