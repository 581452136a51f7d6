//! The network side: the accept loop (`listener`), one task per client connection
//! (`connection`), and `sendfile` of record batches (`send_file`). Only this module owns
//! sockets.

mod connection;
mod listener;
mod send_file;

pub use listener::run_listener;
