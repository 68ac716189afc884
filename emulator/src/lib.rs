//! Embedded, in-memory Stream-Chat-compatible upstream ("emulator").
//!
//! This crate owns a small Stream Chat server: the WebSocket `/connect`
//! handshake and heartbeat, the REST routes the `stream-chat` JS SDK 9.x uses
//! for channels, messages (edits, pins, deletion, history pages, quotes), reactions, search,
//! uploads, polls, typing, read and delivery state, users, moderation, devices, hiding, members,
//! threads, drafts, reminders and app settings, and the event fan-out between connections, per connection as
//! Stream delivers it (watches, presence subscriptions and `notification.*` to
//! the connections that do not watch), so it can serve as the tests' oracle for
//! multiplexing. It is a product feature: `stream-edge serve
//! --upstream embedded` runs it on a loopback port behind the gateway, and
//! `stream-edge emulator --listen ADDR` runs it standalone so the real SDK can
//! chat against it directly.
//!
//! Layout (one concept per file), from the top down; each module imports only modules below it:
//! * [`server`] – accept loop, hyper HTTP/1.1 connections, routing, CORS preflight, control routes;
//! * [`reminder_clock`] – the task that sends `notification.reminder_due` when reminders fall due;
//! * [`control_watchers`] – the `/_emulator/watchers` control route (who watches what upstream);
//! * [`rest`] – REST authentication, bounded bodies, handler dispatch;
//! * [`ws`], [`connect`] – the WebSocket session (handshake frame, pings,
//!   event delivery) and the checks of the `/connect` request;
//! * [`channels`], [`actions`], [`query`], [`users`], [`devices`], [`hiding`],
//!   [`members`], [`threads`], [`messages`], [`deletion`], [`message_lists`], [`reactions`], [`search`],
//!   [`uploads`], [`polls`], [`poll_options`], [`poll_votes`], [`channel_admin`], [`member_state`],
//!   [`mutes`], [`blocks`], [`bans`], [`banned_users`], [`guests`], [`user_query`], [`user_lifecycle`], [`reads`],
//!   [`drafts`], [`reminders`], [`app_settings`], [`channel_types`] – the REST handlers ([`roles`]: invites and
//!   moderators within a channel update);
//! * [`thread_marks`] – marking one thread read or unread, and its events;
//! * [`thread_reads`] – per-thread read state (unread replies per participant);
//! * [`message_refs`], [`history`], [`multipart`] – what handlers share: a message's quote and
//!   mentions, history pages, the multipart form parser;
//! * [`filter`] – the filter operators the query routes share;
//! * [`ctx`] – what the front shares with the handlers: the server context and JSON responses;
//! * [`req`] – what a REST handler receives (identity, query, body) and the id check;
//! * [`handle`] – the [`Emulator`] handle tests and the gateway hold;
//! * [`events`] – event shapes and who receives them;
//! * [`presence`] – per-connection presence subscriptions, `user.presence.changed`, `user.updated`;
//! * [`render`], [`render_chat`], [`render_extra`], [`render_poll`] – JSON shapes of users,
//!   channels, messages (reactions, pins, polls) per the OpenAPI spec;
//! * [`auth`] – HS256 JWT verification with Stream's error codes;
//! * [`store`] – the in-memory state (users, channels, connections, watchers);
//! * [`model`] – the records it holds (users, devices, channels, members, messages, reads);
//! * [`social`] – mutes, blocks, bans, receipts, truncations, drafts, reminders, app settings;
//! * [`config`] – the apps, injected faults and bounds an embedder sets;
//! * [`metrics`] – the emulator's own Prometheus registry (bounds hit, REST errors);
//! * [`error`] – the Stream `APIError` body.
//!
//! This crate imports nothing from the gateway: the gateway depends on it, never the reverse.
//!
//! Everything that grows with a peer is bounded (see the `MAX_*` constants):
//! a misbehaving client can exhaust neither memory nor the event queues.

mod actions;
mod app_settings;
mod auth;
mod banned_users;
mod bans;
mod blocks;
mod channel_admin;
mod channel_types;
mod channels;
mod config;
mod connect;
mod control_watchers;
mod ctx;
mod deletion;
mod devices;
mod drafts;
mod error;
mod events;
mod filter;
mod guests;
mod handle;
mod hiding;
mod history;
mod member_state;
mod members;
mod message_lists;
mod message_refs;
mod messages;
mod metrics;
mod model;
mod multipart;
mod mutes;
mod poll_options;
mod poll_votes;
mod polls;
mod presence;
mod query;
mod reactions;
mod reads;
mod reminder_clock;
mod reminders;
mod render;
mod render_chat;
mod render_extra;
mod render_poll;
mod req;
mod rest;
mod roles;
mod search;
mod server;
mod social;
mod store;
mod thread_marks;
mod thread_reads;
mod threads;
mod uploads;
mod user_lifecycle;
mod user_query;
mod users;
mod ws;

pub use config::{
    App, Faults, DEFAULT_HEALTH_INTERVAL, MAX_BODY_BYTES, MAX_DEVICES_PER_USER,
    MAX_MESSAGES_PER_CHANNEL, MAX_MESSAGE_TEXT, MAX_UPLOADS_PER_APP, MAX_UPLOADS_TOTAL_BYTES,
    MAX_UPLOAD_BYTES, MAX_USER_BYTES, OUTBOUND_QUEUE_CAPACITY,
};
pub use handle::Emulator;
pub use server::serve;
