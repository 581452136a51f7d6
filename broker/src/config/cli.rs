//! The `sluice` command line. Every flag can also come from a `SLUICE_*` environment variable.

use std::path::PathBuf;

/// Sluice: a Kafka-compatible message broker.
#[derive(Debug, clap::Parser)]
#[command(name = "sluice", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Optional TOML configuration file.
    #[arg(long, env = "SLUICE_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Address for the Kafka listener [default: 127.0.0.1:9092].
    #[arg(long, env = "SLUICE_LISTEN", global = true)]
    pub listen: Option<String>,
    /// host:port advertised to clients [default: the listen address].
    #[arg(long, env = "SLUICE_ADVERTISED_LISTENER")]
    pub advertised_listener: Option<String>,
    /// A second Kafka listener for replication between brokers, HOST:PORT [default: none, the
    /// brokers replicate through the client listener].
    #[arg(long, env = "SLUICE_INTER_BROKER_LISTEN")]
    pub inter_broker_listen: Option<String>,
    /// host:port other brokers use to fetch from this one [default: the inter-broker listen
    /// address, else the advertised listener].
    #[arg(long, env = "SLUICE_INTER_BROKER_ADVERTISED_LISTENER")]
    pub inter_broker_advertised_listener: Option<String>,
    /// Directory for the logs and broker metadata [default: ./sluice-data].
    #[arg(long, env = "SLUICE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// This broker's node id [default: 1].
    #[arg(long, env = "SLUICE_NODE_ID")]
    pub node_id: Option<i32>,
    /// Log filter (error, warn, info, debug, trace, or a tracing directive) [default: info].
    #[arg(long, env = "SLUICE_LOG_LEVEL")]
    pub log_level: Option<String>,
    /// Serve Prometheus metrics at http://HOST:PORT/metrics [default: off].
    #[arg(long, env = "SLUICE_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// Cluster: this node's controller listener, HOST:PORT (required with --controller-voters).
    #[arg(long, env = "SLUICE_CONTROLLER_LISTEN")]
    pub controller_listen: Option<String>,
    /// Cluster: the controller quorum, `id@host:port,id@host:port,...` (each node's
    /// --controller-listen). Unset: a single node, its own one-voter quorum.
    #[arg(long, env = "SLUICE_CONTROLLER_VOTERS")]
    pub controller_voters: Option<String>,
    /// Cluster: this broker's rack (`broker.rack`), for rack-aware replica placement.
    #[arg(long, env = "SLUICE_BROKER_RACK")]
    pub broker_rack: Option<String>,
    /// A broker setting with its Kafka name, e.g. `--set num.partitions=3`; repeatable.
    /// From the environment: SLUICE_SET="k1=v1,k2=v2".
    #[arg(
        long = "set",
        value_name = "KEY=VALUE",
        env = "SLUICE_SET",
        value_delimiter = ','
    )]
    pub set: Vec<String>,
}

/// Subcommands besides running the broker.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Send ApiVersions to a broker and exit 0 if it answers (for container health checks).
    Healthcheck {
        /// Broker to ask [default: the --listen address].
        #[arg(long)]
        bootstrap: Option<String>,
        /// Give up after this many milliseconds.
        #[arg(long, default_value_t = 5000)]
        timeout_ms: u64,
    },
}
