//! Broker configuration: command line, environment, optional TOML file, and Kafka-named
//! settings.
//!
//! Precedence, highest first: a command-line flag, its `SLUICE_*` environment variable, the
//! TOML file given by `--config`, the built-in default. With no arguments at all, `sluice`
//! runs a single node on 127.0.0.1:9092 with its data in `./sluice-data`.

mod cli;
mod settings;
mod topic_config;

pub use cli::{Cli, Command};
pub use settings::{
    connection_overrides, BrokerSettings, ConfigSource, ConfigType, SettingDef, BROKER_SETTINGS,
};
pub use topic_config::{
    effective_topic_config, log_config as log_config_for, topic_config_def, validate_topic_config,
    TopicConfigDef, TopicConfigs, TOPIC_CONFIGS,
};

use std::net::SocketAddr;
use std::path::PathBuf;

/// Everything the broker needs to start, resolved from all sources.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Address the Kafka listener binds.
    pub listen: SocketAddr,
    /// host:port given to clients in Metadata; defaults to `listen`.
    pub advertised_host: String,
    pub advertised_port: i32,
    /// Address of the second, inter-broker Kafka listener, if any (`--inter-broker-listen`).
    pub inter_broker_listen: Option<SocketAddr>,
    /// host:port other brokers fetch from (registered with the controller as this broker's
    /// replica endpoint); defaults to the inter-broker listen address, else the advertised
    /// listener. Metadata never returns it: clients always get the advertised listener.
    pub inter_broker_advertised_host: String,
    pub inter_broker_advertised_port: i32,
    /// Root of all partition directories and broker metadata.
    pub data_dir: PathBuf,
    /// This broker's node id (Kafka's `node.id`).
    pub node_id: i32,
    /// tracing filter, e.g. `info` or `sluice=debug`.
    pub log_level: String,
    /// Kafka-named settings (`num.partitions`, `log.segment.bytes`, ...).
    pub settings: BrokerSettings,
    /// Where to serve Prometheus metrics, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    /// Set when this node is part of a multi-node cluster (`--controller-voters`).
    pub cluster: Option<ClusterConfig>,
}

/// A node of a cluster: its controller listener, the voters, its rack.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Where this node's controller listener binds.
    pub controller_listen: SocketAddr,
    /// Every voter: node id and controller address (`host:port`, resolved when used, so
    /// container names work before the other containers exist).
    pub voters: Vec<(i32, String)>,
    /// `broker.rack`.
    pub rack: Option<String>,
}

/// Parses `1@host:port,2@host:port`.
pub fn parse_voters(value: &str) -> Result<Vec<(i32, String)>, String> {
    let mut voters = Vec::new();
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('@')
            .ok_or_else(|| format!("{part:?}: expected ID@HOST:PORT"))?;
        let id: i32 = id
            .trim()
            .parse()
            .map_err(|_| format!("{part:?}: node id is not a number"))?;
        if id < 0 {
            return Err(format!("{part:?}: node id must not be negative"));
        }
        split_host_port("--controller-voters", addr.trim()).map_err(|e| e.to_string())?;
        if voters.iter().any(|(v, _)| *v == id) {
            return Err(format!("node id {id} is listed twice"));
        }
        voters.push((id, addr.trim().to_string()));
    }
    if voters.is_empty() {
        return Err("no voters given".to_string());
    }
    Ok(voters)
}

/// A configuration problem found at start-up; the broker refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {reason}")]
    ParseFile { path: PathBuf, reason: String },
    #[error("invalid address {value:?} for {what}: {reason}")]
    Address {
        what: &'static str,
        value: String,
        reason: String,
    },
    #[error("invalid setting {0}")]
    Setting(String),
    #[error("invalid node id {0}: must be 0 to {max}", max = crate::producer_ids::MAX_NODE_ID)]
    NodeId(i32),
}

/// The optional TOML file: the same keys as the flags, plus a `[settings]` table of
/// Kafka-named broker settings.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    advertised_listener: Option<String>,
    inter_broker_listen: Option<String>,
    inter_broker_advertised_listener: Option<String>,
    data_dir: Option<PathBuf>,
    node_id: Option<i32>,
    log_level: Option<String>,
    metrics_listen: Option<String>,
    controller_listen: Option<String>,
    controller_voters: Option<String>,
    broker_rack: Option<String>,
    #[serde(default)]
    settings: std::collections::BTreeMap<String, toml::Value>,
}

impl BrokerConfig {
    /// A single-node configuration over `dir` with `settings`, for unit tests.
    #[cfg(test)]
    pub(crate) fn for_tests(dir: &std::path::Path, settings: BrokerSettings) -> Self {
        BrokerConfig {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            advertised_host: "127.0.0.1".into(),
            advertised_port: 9092,
            inter_broker_listen: None,
            inter_broker_advertised_host: "127.0.0.1".into(),
            inter_broker_advertised_port: 9092,
            data_dir: dir.to_path_buf(),
            node_id: 1,
            log_level: "info".into(),
            settings,
            metrics_listen: None,
            cluster: None,
        }
    }

    /// Resolves the configuration from parsed command-line arguments (which already include
    /// the environment variables).
    pub fn resolve(cli: &Cli) -> Result<Self, ConfigError> {
        let file = match &cli.config {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
                        path: path.clone(),
                        source,
                    })?;
                toml::from_str::<FileConfig>(&text).map_err(|e| ConfigError::ParseFile {
                    path: path.clone(),
                    reason: e.to_string(),
                })?
            }
            None => FileConfig::default(),
        };
        let listen_str = cli
            .listen
            .clone()
            .or(file.listen)
            .unwrap_or_else(|| "127.0.0.1:9092".to_string());
        let listen = parse_addr("--listen", &listen_str)?;
        let advertised = cli.advertised_listener.clone().or(file.advertised_listener);
        let (advertised_host, advertised_port) = match advertised {
            Some(a) => split_host_port("--advertised-listener", &a)?,
            None => (listen.ip().to_string(), i32::from(listen.port())),
        };
        let inter_broker_listen = match cli.inter_broker_listen.clone().or(file.inter_broker_listen)
        {
            Some(a) => Some(parse_addr("--inter-broker-listen", &a)?),
            None => None,
        };
        let (inter_broker_advertised_host, inter_broker_advertised_port) = match cli
            .inter_broker_advertised_listener
            .clone()
            .or(file.inter_broker_advertised_listener)
        {
            Some(a) => split_host_port("--inter-broker-advertised-listener", &a)?,
            None => match inter_broker_listen {
                // Other brokers cannot connect to 0.0.0.0 or [::] (Kafka refuses to advertise
                // them too).
                Some(addr) if addr.ip().is_unspecified() => {
                    return Err(ConfigError::Address {
                        what: "--inter-broker-advertised-listener",
                        value: addr.to_string(),
                        reason: "required when --inter-broker-listen binds a wildcard address"
                            .to_string(),
                    })
                }
                Some(addr) => (addr.ip().to_string(), i32::from(addr.port())),
                None => (advertised_host.clone(), advertised_port),
            },
        };
        let mut settings = BrokerSettings::default();
        for (key, value) in &file.settings {
            let value = match value {
                toml::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            settings.set(key, &value).map_err(ConfigError::Setting)?;
        }
        for kv in &cli.set {
            let (key, value) = kv
                .split_once('=')
                .ok_or_else(|| ConfigError::Setting(format!("{kv:?}: expected key=value")))?;
            settings
                .set(key.trim(), value.trim())
                .map_err(ConfigError::Setting)?;
        }
        let metrics_listen = match cli.metrics_listen.clone().or(file.metrics_listen) {
            Some(a) => Some(parse_addr("--metrics-listen", &a)?),
            None => None,
        };
        let node_id = cli.node_id.or(file.node_id).unwrap_or(1);
        // Each node hands out producer ids in a range of its own (`producer_ids`).
        if !(0..=crate::producer_ids::MAX_NODE_ID).contains(&node_id) {
            return Err(ConfigError::NodeId(node_id));
        }
        let cluster = match cli.controller_voters.clone().or(file.controller_voters) {
            None => None,
            Some(v) => {
                let voters = parse_voters(&v).map_err(|reason| ConfigError::Address {
                    what: "--controller-voters",
                    value: v.clone(),
                    reason,
                })?;
                let own = voters
                    .iter()
                    .find(|(id, _)| *id == node_id)
                    .map(|(_, a)| a.clone());
                let listen_str = cli
                    .controller_listen
                    .clone()
                    .or(file.controller_listen)
                    .or(own)
                    .ok_or_else(|| ConfigError::Address {
                        what: "--controller-listen",
                        value: String::new(),
                        reason: "required with --controller-voters".to_string(),
                    })?;
                let controller_listen = parse_addr("--controller-listen", &listen_str)?;
                Some(ClusterConfig {
                    controller_listen,
                    voters,
                    rack: cli.broker_rack.clone().or(file.broker_rack),
                })
            }
        };
        Ok(Self {
            listen,
            metrics_listen,
            cluster,
            advertised_host,
            advertised_port,
            inter_broker_listen,
            inter_broker_advertised_host,
            inter_broker_advertised_port,
            data_dir: cli
                .data_dir
                .clone()
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("sluice-data")),
            node_id,
            log_level: cli
                .log_level
                .clone()
                .or(file.log_level)
                .unwrap_or_else(|| "info".to_string()),
            settings,
        })
    }
}

fn parse_addr(what: &'static str, value: &str) -> Result<SocketAddr, ConfigError> {
    use std::net::ToSocketAddrs;
    value
        .to_socket_addrs()
        .map_err(|e| ConfigError::Address {
            what,
            value: value.to_string(),
            reason: e.to_string(),
        })?
        .next()
        .ok_or_else(|| ConfigError::Address {
            what,
            value: value.to_string(),
            reason: "resolves to no address".to_string(),
        })
}

fn split_host_port(what: &'static str, value: &str) -> Result<(String, i32), ConfigError> {
    let bad = |reason: &str| ConfigError::Address {
        what,
        value: value.to_string(),
        reason: reason.to_string(),
    };
    let (host, port) = value
        .rsplit_once(':')
        .ok_or_else(|| bad("expected HOST:PORT"))?;
    let port: u16 = port.parse().map_err(|_| bad("port is not a number"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(bad("empty host"));
    }
    Ok((host.to_string(), i32::from(port)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn defaults_with_no_arguments() {
        let cli = Cli::try_parse_from(["sluice"]).unwrap();
        let c = BrokerConfig::resolve(&cli).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:9092");
        assert_eq!(c.advertised_host, "127.0.0.1");
        assert_eq!(c.advertised_port, 9092);
        assert_eq!(c.data_dir, PathBuf::from("sluice-data"));
        assert_eq!(c.node_id, 1);
        assert_eq!(c.settings.i32("num.partitions"), 1);
    }

    #[test]
    fn flags_override_file_and_set_applies() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9999\"\nnode_id = 4\n[settings]\n\"num.partitions\" = 3\n",
        )
        .unwrap();
        let cli = Cli::try_parse_from([
            "sluice",
            "--config",
            path.to_str().unwrap(),
            "--node-id",
            "7",
            "--advertised-listener",
            "broker.example:19092",
            "--set",
            "auto.create.topics.enable=false",
        ])
        .unwrap();
        let c = BrokerConfig::resolve(&cli).unwrap();
        assert_eq!(c.listen.port(), 9999);
        assert_eq!(c.node_id, 7);
        assert_eq!(c.advertised_host, "broker.example");
        assert_eq!(c.advertised_port, 19092);
        assert_eq!(c.settings.i32("num.partitions"), 3);
        assert!(!c.settings.bool("auto.create.topics.enable"));
    }

    #[test]
    fn cluster_flags() {
        let cli = Cli::try_parse_from([
            "sluice",
            "--node-id",
            "2",
            "--controller-voters",
            "1@127.0.0.1:9101, 2@127.0.0.1:9102,3@localhost:9103",
            "--broker-rack",
            "r1",
        ])
        .unwrap();
        let c = BrokerConfig::resolve(&cli).unwrap();
        let cluster = c.cluster.unwrap();
        assert_eq!(cluster.controller_listen.port(), 9102);
        assert_eq!(cluster.voters.len(), 3);
        assert_eq!(cluster.voters[2], (3, "localhost:9103".to_string()));
        assert_eq!(cluster.rack.as_deref(), Some("r1"));
        assert!(parse_voters("1@a:1,1@b:2").is_err());
        assert!(parse_voters("x@a:1").is_err());
        assert!(parse_voters("1@a").is_err());
        // A broker-only node (not a voter) needs its own --controller-listen.
        let no_listener =
            Cli::try_parse_from(["sluice", "--node-id", "9", "--controller-voters", "1@h:1"])
                .unwrap();
        assert!(BrokerConfig::resolve(&no_listener).is_err());
        // Node ids whose producer id range would not fit are refused.
        for (id, ok) in [("8388607", true), ("8388608", false), ("-1", false)] {
            let cli = Cli::try_parse_from(["sluice", &format!("--node-id={id}")]).unwrap();
            assert_eq!(BrokerConfig::resolve(&cli).is_ok(), ok, "node id {id}");
        }
        let broker_only = Cli::try_parse_from([
            "sluice",
            "--node-id",
            "9",
            "--controller-voters",
            "1@127.0.0.1:1",
            "--controller-listen",
            "127.0.0.1:9109",
        ])
        .unwrap();
        assert_eq!(
            BrokerConfig::resolve(&broker_only)
                .unwrap()
                .cluster
                .unwrap()
                .controller_listen
                .port(),
            9109
        );
    }

    #[test]
    fn inter_broker_listener() {
        // None: replication goes through the client listener.
        let cli =
            Cli::try_parse_from(["sluice", "--advertised-listener", "localhost:19092"]).unwrap();
        let c = BrokerConfig::resolve(&cli).unwrap();
        assert!(c.inter_broker_listen.is_none());
        assert_eq!(c.inter_broker_advertised_host, "localhost");
        assert_eq!(c.inter_broker_advertised_port, 19092);

        // Only the listener: advertised as itself.
        let cli =
            Cli::try_parse_from(["sluice", "--inter-broker-listen", "127.0.0.1:9093"]).unwrap();
        let c = BrokerConfig::resolve(&cli).unwrap();
        assert_eq!(c.inter_broker_listen.unwrap().port(), 9093);
        assert_eq!(c.inter_broker_advertised_host, "127.0.0.1");
        assert_eq!(c.inter_broker_advertised_port, 9093);
        assert_eq!(c.advertised_port, 9092);

        // Both, the way a container runs: wildcard bind, container name advertised.
        let cli = Cli::try_parse_from([
            "sluice",
            "--listen",
            "0.0.0.0:9092",
            "--advertised-listener",
            "localhost:19092",
            "--inter-broker-listen",
            "0.0.0.0:9093",
            "--inter-broker-advertised-listener",
            "sluice-2:9093",
        ])
        .unwrap();
        let c = BrokerConfig::resolve(&cli).unwrap();
        assert_eq!(c.inter_broker_listen.unwrap().to_string(), "0.0.0.0:9093");
        assert_eq!(c.inter_broker_advertised_host, "sluice-2");
        assert_eq!(c.inter_broker_advertised_port, 9093);
        assert_eq!(c.advertised_host, "localhost");
        assert_eq!(c.advertised_port, 19092);

        // From the file.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.toml");
        std::fs::write(
            &path,
            "inter_broker_listen = \"127.0.0.1:9193\"\ninter_broker_advertised_listener = \"b1:9193\"\n",
        )
        .unwrap();
        let cli = Cli::try_parse_from(["sluice", "--config", path.to_str().unwrap()]).unwrap();
        let c = BrokerConfig::resolve(&cli).unwrap();
        assert_eq!(c.inter_broker_listen.unwrap().port(), 9193);
        assert_eq!(c.inter_broker_advertised_host, "b1");

        // A wildcard bind needs an explicit advertised address; bad values are refused.
        for args in [
            vec!["sluice", "--inter-broker-listen", "0.0.0.0:9093"],
            vec!["sluice", "--inter-broker-listen", "nonsense"],
            vec!["sluice", "--inter-broker-advertised-listener", "no-port"],
            vec!["sluice", "--inter-broker-advertised-listener", ":9093"],
        ] {
            let cli = Cli::try_parse_from(args.clone()).unwrap();
            assert!(BrokerConfig::resolve(&cli).is_err(), "{args:?}");
        }
    }

    #[test]
    fn bad_values_are_refused() {
        for args in [
            vec!["sluice", "--set", "num.partitions=abc"],
            vec!["sluice", "--set", "no.such.setting=1"],
            vec!["sluice", "--set", "novalue"],
            vec!["sluice", "--listen", "nonsense"],
        ] {
            let cli = Cli::try_parse_from(args.clone()).unwrap();
            assert!(BrokerConfig::resolve(&cli).is_err(), "{args:?}");
        }
    }
}
