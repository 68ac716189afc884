//! The one integration-test binary (links once): the real gateway on ephemeral ports.

mod attacks;
mod bench_quick;
mod churn;
mod cli;
mod deploy;
mod emulator;
mod faults;
mod lifecycle;
mod limits;
mod longpoll;
mod lp_front;
mod multiplex;
mod observability;
mod privacy;
mod rest;
mod sdk;
mod soak;
mod support;
mod tls;
mod tokens;
mod ws;
