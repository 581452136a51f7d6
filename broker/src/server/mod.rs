//! The network side: the accept loop (`listener`), one task per client connection
//! (`connection`), and the two ways stored record batches leave through a socket: copied out
//! through a bounded buffer (`copy_out`, the default) or with `sendfile` (`send_file`). Only
//! this module owns sockets.

mod connection;
mod copy_out;
mod listener;
mod send_file;

pub use listener::run_listener;
