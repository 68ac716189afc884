//! Embedded, in-memory Stream-Chat-compatible upstream ("emulator").
//!
//! This crate owns a small Stream Chat server: the WebSocket `/connect`
//! handshake and heartbeat, the REST routes the `stream-chat` JS SDK 9.x uses
//! for channels, messages, typing, read state, users, devices, hiding, members
//! and threads, and the event fan-out between connections, per connection as
//! Stream delivers it (watches, presence subscriptions and `notification.*` to
//! the connections that do not watch), so it can serve as the tests' oracle for
//! multiplexing. It is a product feature: `stream-edge serve
//! --upstream embedded` runs it on a loopback port behind the gateway, and
//! `stream-edge emulator --listen ADDR` runs it standalone so the real SDK can
//! chat against it directly.
//!
//! Layout (one concept per file), from the top down; each module imports only modules below it:
//! * [`server`] – accept loop, hyper HTTP/1.1 connections, routing, CORS preflight, control routes;
//! * [`control_watchers`] – the `/_emulator/watchers` control route (who watches what upstream);
//! * [`rest`] – REST authentication, bounded bodies, handler dispatch;
//! * [`ws`], [`connect`] – the WebSocket session (handshake frame, pings,
//!   event delivery) and the checks of the `/connect` request;
//! * [`channels`], [`actions`], [`query`], [`users`], [`devices`], [`hiding`],
//!   [`members`], [`threads`] – the REST handlers;
//! * [`ctx`] – what the front shares with the handlers: the server context and JSON responses;
//! * [`req`] – what a REST handler receives (identity, query, body) and the id check;
//! * [`handle`] – the [`Emulator`] handle tests and the gateway hold;
//! * [`events`] – event shapes and who receives them;
//! * [`presence`] – per-connection presence subscriptions, `user.presence.changed`, `user.updated`;
//! * [`render`], [`render_chat`] – JSON shapes of users, channels and messages per the OpenAPI spec;
//! * [`auth`] – HS256 JWT verification with Stream's error codes;
//! * [`store`] – the in-memory state (users, channels, connections, watchers);
//! * [`model`] – the records it holds (users, devices, channels, members, messages, reads);
//! * [`config`] – the apps, injected faults and bounds an embedder sets;
//! * [`error`] – the Stream `APIError` body.
//!
//! This crate imports nothing from the gateway: the gateway depends on it, never the reverse.
//!
//! Everything that grows with a peer is bounded (see the `MAX_*` constants):
//! a misbehaving client can exhaust neither memory nor the event queues.

mod actions;
mod auth;
mod channels;
mod config;
mod connect;
mod control_watchers;
mod ctx;
mod devices;
mod error;
mod events;
mod handle;
mod hiding;
mod members;
mod model;
mod presence;
mod query;
mod render;
mod render_chat;
mod req;
mod rest;
mod server;
mod store;
mod threads;
mod users;
mod ws;

pub use config::{
    App, Faults, DEFAULT_HEALTH_INTERVAL, MAX_BODY_BYTES, MAX_DEVICES_PER_USER,
    MAX_MESSAGES_PER_CHANNEL, MAX_MESSAGE_TEXT, MAX_USER_BYTES, OUTBOUND_QUEUE_CAPACITY,
};
pub use handle::Emulator;
pub use server::serve;
