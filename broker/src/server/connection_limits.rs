//! Connection limits, shared by every client listener: `max.connections` for the broker as a
//! whole and `max.connections.per.ip` (with `max.connections.per.ip.overrides`) per client
//! address. A connection over a limit is closed as soon as it is accepted, as Kafka closes one
//! over its per-address limit. The inter-broker listener is not counted against
//! `max.connections` (Kafka keeps inter-broker connections going when the broker is full), but
//! its peers' addresses are counted per address like any other.

use std::collections::HashMap;
use std::net::{IpAddr, ToSocketAddrs};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::{connection_overrides, BrokerSettings};

/// The limits and what is counted against them.
#[derive(Debug)]
pub struct ConnectionLimits {
    max_connections: usize,
    total: Arc<Semaphore>,
    per_ip: usize,
    per_ip_overrides: HashMap<IpAddr, usize>,
    /// Open connections per client address (only addresses with one or more).
    by_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `max.connections` are open.
    Broker { max: usize },
    /// The address's limit is reached.
    Address { max: usize },
}

/// A connection counted against the limits; dropping it gives its places back.
#[derive(Debug)]
pub struct ConnectionSlot {
    limits: Arc<ConnectionLimits>,
    ip: IpAddr,
    _total: Option<OwnedSemaphorePermit>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut by_ip = self.limits.by_ip.lock();
        if let Some(n) = by_ip.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                by_ip.remove(&self.ip);
            }
        }
    }
}

impl ConnectionLimits {
    /// The limits the settings give. `max.connections.per.ip.overrides` is a comma-separated
    /// list of `host:count` (host a name or an address); an entry that does not parse or
    /// resolve is an error, as in Kafka.
    pub fn from_settings(settings: &BrokerSettings) -> Result<ConnectionLimits, String> {
        let max_connections = usize::try_from(settings.i32("max.connections").max(1)).unwrap_or(1);
        let per_ip = usize::try_from(settings.i32("max.connections.per.ip").max(0)).unwrap_or(0);
        let overrides = settings
            .str("max.connections.per.ip.overrides")
            .unwrap_or_default();
        let per_ip_overrides = parse_overrides(&overrides)?;
        if per_ip == 0 && per_ip_overrides.is_empty() {
            // As Kafka: zero is only for a broker that lets the overrides' hosts in.
            return Err(
                "max.connections.per.ip may be 0 only with max.connections.per.ip.overrides set"
                    .to_string(),
            );
        }
        Ok(ConnectionLimits {
            max_connections,
            total: Arc::new(Semaphore::new(max_connections)),
            per_ip,
            per_ip_overrides,
            by_ip: Mutex::new(HashMap::new()),
        })
    }

    /// Counts a connection from `ip` (against `max.connections` too unless `inter_broker`), or
    /// says which limit refuses it.
    pub fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        inter_broker: bool,
    ) -> Result<ConnectionSlot, Refused> {
        let ip = canonical(ip);
        let total = if inter_broker {
            None
        } else {
            Some(
                Arc::clone(&self.total)
                    .try_acquire_owned()
                    .map_err(|_| Refused::Broker {
                        max: self.max_connections,
                    })?,
            )
        };
        let max = self
            .per_ip_overrides
            .get(&ip)
            .copied()
            .unwrap_or(self.per_ip);
        let mut by_ip = self.by_ip.lock();
        let open = by_ip.entry(ip).or_insert(0);
        if *open >= max {
            if *open == 0 {
                by_ip.remove(&ip);
            }
            return Err(Refused::Address { max });
        }
        *open += 1;
        drop(by_ip);
        Ok(ConnectionSlot {
            limits: Arc::clone(self),
            ip,
            _total: total,
        })
    }
}

/// An IPv4 address seen through an IPv6 socket counts as the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// `max.connections.per.ip.overrides` by address: each entry's host resolved to its addresses.
fn parse_overrides(list: &str) -> Result<HashMap<IpAddr, usize>, String> {
    let mut out = HashMap::new();
    for (host, count) in connection_overrides(list)? {
        let ips: Vec<IpAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => (host, 0)
                .to_socket_addrs()
                .map_err(|e| format!("max.connections.per.ip.overrides: {host}: {e}"))?
                .map(|a| a.ip())
                .collect(),
        };
        for ip in ips {
            out.insert(canonical(ip), count);
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn limits(pairs: &[(&str, &str)]) -> Arc<ConnectionLimits> {
        let mut settings = BrokerSettings::default();
        for (k, v) in pairs {
            settings.set(k, v).unwrap();
        }
        Arc::new(ConnectionLimits::from_settings(&settings).unwrap())
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn each_address_has_its_own_limit_and_a_closed_connection_frees_its_place() {
        let l = limits(&[
            ("max.connections.per.ip", "2"),
            (
                "max.connections.per.ip.overrides",
                "127.0.0.3:0, 127.0.0.4:3",
            ),
        ]);
        let a = l.admit(ip("127.0.0.1"), false).unwrap();
        let _b = l.admit(ip("::ffff:127.0.0.1"), false).unwrap();
        assert_eq!(
            l.admit(ip("127.0.0.1"), false).unwrap_err(),
            Refused::Address { max: 2 }
        );
        let _c = l.admit(ip("127.0.0.2"), false).unwrap();
        assert!(l.admit(ip("127.0.0.3"), false).is_err());
        let four: Vec<_> = (0..3)
            .map(|_| l.admit(ip("127.0.0.4"), false).unwrap())
            .collect();
        assert!(l.admit(ip("127.0.0.4"), false).is_err());
        drop(a);
        let _d = l.admit(ip("127.0.0.1"), false).unwrap();
        drop(four);
        assert!(l.by_ip.lock().get(&ip("127.0.0.4")).is_none());
        assert!(l.by_ip.lock().get(&ip("127.0.0.3")).is_none());
    }

    #[test]
    fn the_broker_limit_counts_every_client_listener_but_not_the_inter_broker_one() {
        let l = limits(&[("max.connections", "2")]);
        let _a = l.admit(ip("127.0.0.1"), false).unwrap();
        let b = l.admit(ip("127.0.0.2"), false).unwrap();
        assert_eq!(
            l.admit(ip("127.0.0.3"), false).unwrap_err(),
            Refused::Broker { max: 2 }
        );
        let _replica = l.admit(ip("127.0.0.3"), true).unwrap();
        drop(b);
        let _c = l.admit(ip("127.0.0.3"), false).unwrap();
    }

    #[test]
    fn overrides_that_do_not_parse_are_refused() {
        for bad in ["127.0.0.1", "127.0.0.1:x", "127.0.0.1:-1", ":3"] {
            let mut settings = BrokerSettings::default();
            assert!(
                settings
                    .set("max.connections.per.ip.overrides", bad)
                    .is_err(),
                "{bad}"
            );
            assert!(parse_overrides(bad).is_err(), "{bad}");
        }
        let mut zero = BrokerSettings::default();
        zero.set("max.connections.per.ip", "0").unwrap();
        assert!(
            ConnectionLimits::from_settings(&zero).is_err(),
            "0 without overrides"
        );
        let named = limits(&[("max.connections.per.ip.overrides", "localhost:5,[::1]:6")]);
        assert_eq!(named.per_ip_overrides.get(&ip("127.0.0.1")), Some(&5));
        assert_eq!(named.per_ip_overrides.get(&ip("::1")), Some(&6));
    }
}
