//! The network side: the accept loop (`listener`) and one task per client connection
//! (`connection`). Only this module owns sockets.

mod connection;
mod listener;

pub use listener::run_listener;
