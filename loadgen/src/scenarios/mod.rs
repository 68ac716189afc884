//! The scenarios, one module each. Every scenario starts its own systems under test, measures,
//! and stops them; it returns its figures as JSON for the report.

mod fanout;
mod idle;
mod longpoll;
mod pinned;
mod profile;
mod storm;

pub(crate) use fanout::fanout;
pub(crate) use idle::idle;
pub(crate) use longpoll::longpoll;
pub(crate) use pinned::pinned;
pub(crate) use profile::profile_pass;
pub(crate) use storm::storm;
