//! The one integration-test binary (links once): the real gateway on ephemeral ports.

mod architecture;
mod attacks;
mod bench_quick;
mod churn;
mod cli;
mod deploy;
mod emulator;
mod exhaustion;
mod faults;
mod holes;
mod invisible;
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
mod trust;
mod ws;
