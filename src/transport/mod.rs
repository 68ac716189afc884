//! Client transports: the WebSocket `/connect` endpoint ([`ws`], sessions in `ws_session`) and
//! `/longpoll` ([`longpoll`]; its sessions live in `session::longpoll`, its lean HTTP/1.1 front
//! in `front::lean`). Both parse the same connect payload ([`connect`]), speak the same frames
//! ([`frames`]) and attach to the same hubs; a WebSocket client's SDK ([`dialect`]) decides the
//! few answers where the official SDKs conflict.

pub mod connect;
pub mod dialect;
pub mod frames;
pub mod longpoll;
pub mod ws;

mod wire;
mod ws_session;
pub mod wsframe;
