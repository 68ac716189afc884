//! Client transports: the WebSocket `/connect` endpoint and `/longpoll` (with its lean HTTP/1.1
//! front, [`lp_http`]). Both parse the same connect payload ([`connect`]), speak the same frames
//! ([`frames`]) and attach to the same hubs.

pub mod connect;
pub mod frames;
pub mod io;
pub mod longpoll;
pub mod lp_http;

pub mod lp_session;
pub mod ws;

mod ws_session;
