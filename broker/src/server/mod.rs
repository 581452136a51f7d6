//! The network side: the accept loop (`listener`) and the connection limits it applies
//! (`connection_limits`), one task per client connection
//! (`connection`) with another writing its responses (`response_writer`), and the ways stored record batches leave through a socket: written from
//! memory mappings of the segment (`map_out`, the default for large answers), copied out
//! through a bounded buffer (`copy_out`, small ones), or with `sendfile` (`send_file`, when
//! set). Only this module owns sockets.

mod connection;
mod connection_limits;
mod copy_out;
mod listener;
mod map_out;
mod read_buffer;
mod response_writer;
mod send_file;
#[cfg(test)]
mod test_support;

pub use connection_limits::ConnectionLimits;
pub use listener::run_listener;
