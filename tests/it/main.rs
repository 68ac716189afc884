//! The one integration-test binary (links once): the real gateway on ephemeral ports.

mod cli;
mod deploy;
mod emulator;

mod lifecycle;
mod longpoll;

mod multiplex;
mod privacy;

mod observability;
mod rest;
mod sdk;
mod support;
mod ws;
