//! Client transports: the WebSocket `/connect` endpoint and (later) `/longpoll`. Both parse the same
//! connect payload ([`connect`]), speak the same frames ([`frames`]) and attach to the same hubs.

pub mod connect;
pub mod frames;
pub mod longpoll;
pub mod lp_session;
pub mod ws;

mod ws_session;
