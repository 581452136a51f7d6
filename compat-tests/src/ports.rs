//! Free loopback ports for test brokers.
//!
//! A port is found by binding `127.0.0.1:0` and releasing it. Another process
//! could grab it before the broker binds, but that is rare on a test machine;
//! within this process every port is handed out at most once, so tests
//! running in parallel threads never pick the same one.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::sync::Mutex;

/// Ports already handed out by this process.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// Returns a loopback port that was free a moment ago and has not been
/// returned before by this process.
pub fn free_port() -> u16 {
    for _ in 0..100 {
        let listener = match TcpListener::bind("127.0.0.1:0") {
            Ok(l) => l,
            Err(e) => panic!("cannot bind 127.0.0.1:0 to find a free port: {e}"),
        };
        let port = match listener.local_addr() {
            Ok(a) => a.port(),
            Err(e) => panic!("cannot read the local address of a bound socket: {e}"),
        };
        drop(listener);
        let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
        if handed_out.insert(port) {
            return port;
        }
    }
    panic!("no unused free port found in 100 attempts");
}
