//! The one integration-test binary (links once): the real gateway on ephemeral ports.

mod cli;
mod emulator;

mod lifecycle;
mod longpoll;

mod multiplex;
mod rest;
mod sdk;
mod support;
mod ws;
