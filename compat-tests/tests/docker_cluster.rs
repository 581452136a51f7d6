//! The three-node compose cluster (`docker/compose.yaml`) on a real Docker engine, driven from
//! the host through the advertised listeners.
//!
//! One test, in order: build the image (`docker/build.sh --binary`, as `tests/docker.rs`
//! does; `SLUICE_DOCKER_IMAGE` tests a prebuilt one), bring the project up under a unique
//! name on three free host ports with quick failure detection, wait until every node is
//! healthy and every node lists all three brokers at their advertised `localhost:PORT`; kcat
//! creates a topic with replication factor 3 (auto-creation, `default.replication.factor=3`),
//! produces and consumes it; librdkafka creates another (RF=3, `min.insync.replicas=2`) and an
//! idempotent acks=all producer writes to it for the rest of the test while:
//!
//! - `docker kill` stops the container leading partition 0: produce resumes on a new leader,
//!   and after `docker start` the node rejoins and catches up (ISR full again);
//! - `docker network disconnect` cuts a follower off: it leaves the ISR and produce goes on;
//!   after `docker network connect` (with its service name as alias) it rejoins the ISR.
//!
//! Then every acknowledged record is read back (none lost, none twice, in order), `compose
//! stop` must end every node with exit code 0 inside Docker's 10 s grace, and `down -v` must
//! leave no container, network or volume of the project. The [`Deployment`] guard
//! tears everything down even when a step fails.
//!
//! Without a Docker engine or a compose tool the test prints why it is skipped and passes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use compat_tests::cluster::{PartitionInfo, TestCluster};
use compat_tests::docker::{
    build_image, docker, docker_and_compose, image_under_test, unique_name, Deployment,
    COMMAND_TIMEOUT,
};
use compat_tests::kcat::{find_kcat, read_from_beginning, run_kcat, KcatOutput};
use compat_tests::load::{numbered_load, Acked};
use compat_tests::ports::free_port;
use compat_tests::rdk;
use compat_tests::{require, unique_topic, workspace_root, RawConnection};
use kafka_protocol::messages::MetadataRequest;
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::util::Timeout;
use rdkafka::{ClientConfig, Offset};

/// Node ids 1..=3 run as these compose services.
const SERVICES: [&str; 3] = ["sluice-1", "sluice-2", "sluice-3"];
/// Partitions of the loaded topic.
const PARTITIONS: i32 = 3;
/// Records kcat produces and reads back.
const KCAT_RECORDS: usize = 500;
/// Quick failure detection, as the loopback cluster tests use, and RF=3 for auto-created
/// topics.
const SETTINGS: &str = "broker.session.timeout.ms=3000,broker.heartbeat.interval.ms=500,\
replica.lag.time.max.ms=4000,default.replication.factor=3,group.initial.rebalance.delay.ms=0";
/// Longest wait for a cluster state change (a leader elected, the ISR full again).
const STATE_TIMEOUT: Duration = Duration::from_secs(60);

/// The cluster under test: the compose project and its nodes' host ports.
struct Cluster {
    deployment: Deployment,
    /// Host port of node `i + 1`, also its advertised port.
    ports: [u16; 3],
}

impl Cluster {
    /// Every node's advertised listener.
    fn bootstrap(&self) -> String {
        self.bootstrap_without(None)
    }

    /// Every node's advertised listener but `skip`'s.
    fn bootstrap_without(&self, skip: Option<i32>) -> String {
        (1..=3)
            .filter(|id| Some(*id) != skip)
            .map(|id| format!("localhost:{}", self.port(id)))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn port(&self, id: i32) -> u16 {
        self.ports[usize::try_from(id - 1).unwrap()]
    }

    fn container(&self, id: i32) -> String {
        self.deployment
            .container(SERVICES[usize::try_from(id - 1).unwrap()])
    }

    /// The brokers node `id` lists in Metadata (asked directly): (id, host:port).
    fn brokers_seen_by(&self, id: i32) -> Option<Vec<(i32, String)>> {
        let addr = format!("127.0.0.1:{}", self.port(id));
        let mut conn =
            RawConnection::connect_with_timeout(addr.as_str(), Duration::from_secs(2)).ok()?;
        let response = conn
            .call(
                &MetadataRequest::default().with_topics(Some(Vec::new())),
                12,
            )
            .ok()?;
        let mut brokers: Vec<(i32, String)> = response
            .brokers
            .iter()
            .map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port)))
            .collect();
        brokers.sort();
        Some(brokers)
    }

    /// Waits until every node lists all three brokers at their advertised listeners (a node
    /// lists itself even while fenced, so only all three views prove every node unfenced).
    fn wait_for_brokers(&self) -> Duration {
        let started = Instant::now();
        let want: Vec<(i32, String)> = (1..=3)
            .map(|id| (id, format!("localhost:{}", self.port(id))))
            .collect();
        loop {
            let views: Vec<_> = (1..=3).map(|id| self.brokers_seen_by(id)).collect();
            if views.iter().all(|v| v.as_ref() == Some(&want)) {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < STATE_TIMEOUT,
                "the nodes do not all list {want:?}: {views:?}\n{}",
                self.deployment.logs()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// A metadata client bootstrapped from the nodes other than `skip`.
    fn metadata_client(&self, skip: Option<i32>) -> BaseConsumer {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", self.bootstrap_without(skip))
            .set("socket.timeout.ms", "5000")
            .set("topic.metadata.refresh.interval.ms", "500")
            .set("broker.address.family", "v4");
        config.create().unwrap()
    }

    /// Waits until `pred` holds for `topic`'s partitions (asking the nodes other than
    /// `skip`); returns how long it took.
    fn wait_for_partitions(
        &self,
        topic: &str,
        skip: Option<i32>,
        what: &str,
        pred: impl Fn(&[PartitionInfo]) -> bool,
    ) -> Duration {
        let client = self.metadata_client(skip);
        let started = Instant::now();
        let mut last = None;
        while started.elapsed() < STATE_TIMEOUT {
            if let Some(parts) = TestCluster::partitions(&client, topic) {
                if pred(&parts) {
                    return started.elapsed();
                }
                last = Some(parts);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "{what}: not reached within {STATE_TIMEOUT:?}; last metadata: {last:?}\n{}",
            self.deployment.logs()
        );
    }
}

/// Runs kcat, which must exit with 0; returns its stdout.
fn kcat_ok(kcat: &std::path::Path, args: &[&str], stdin: &[u8]) -> String {
    String::from_utf8(kcat_succeeds(kcat, args, stdin).stdout).expect("kcat output is UTF-8")
}

/// Runs kcat and fails the test unless it exits with 0; returns all it wrote.
fn kcat_succeeds(kcat: &std::path::Path, args: &[&str], stdin: &[u8]) -> KcatOutput {
    let out = run_kcat(kcat, args, stdin, COMMAND_TIMEOUT);
    assert!(
        out.success(),
        "kcat {} failed (exit {:?}):\n{}",
        args.join(" "),
        out.code,
        out.stderr
    );
    out
}

/// How the lines read back differ from the lines written, in a few lines: counts, the
/// first line that differs, lines missing and lines read twice.
fn describe_difference(written: &str, read: &str) -> String {
    let want: Vec<&str> = written.lines().collect();
    let got: Vec<&str> = read.lines().collect();
    if want == got {
        return "the same".to_owned();
    }
    let first_diff = want
        .iter()
        .zip(&got)
        .position(|(w, g)| w != g)
        .unwrap_or(want.len().min(got.len()));
    let got_set: HashSet<&str> = got.iter().copied().collect();
    let missing: Vec<&str> = want
        .iter()
        .copied()
        .filter(|l| !got_set.contains(l))
        .collect();
    let mut seen = HashSet::new();
    let twice: Vec<&str> = got.iter().copied().filter(|l| !seen.insert(*l)).collect();
    format!(
        "{} lines written, {} read; first difference at line {first_diff} (written {:?}, read \
         {:?}); {} missing (first {:?}); {} read more than once (first {:?})",
        want.len(),
        got.len(),
        want.get(first_diff),
        got.get(first_diff),
        missing.len(),
        missing.first(),
        twice.len(),
        twice.first()
    )
}

/// An idempotent acks=all producer writing sequence numbers round-robin over the partitions
/// until `stop`, on its own thread and runtime; returns (sent, failed).
fn start_load(
    bootstrap: String,
    topic: String,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<Acked>>>,
) -> std::thread::JoinHandle<(u64, usize)> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let producer: FutureProducer = rdk::producer(
                &bootstrap,
                &[("message.timeout.ms", "60000"), ("linger.ms", "2")],
            );
            let sent_failed = numbered_load(&producer, &topic, PARTITIONS, 30, &stop, &acked).await;
            producer
                .flush(Timeout::After(Duration::from_secs(30)))
                .unwrap();
            sent_failed
        })
    })
}

/// Waits until a record of `partition` (any, if `None`) is acknowledged after `since`;
/// returns how long after `since`.
fn wait_for_ack_after(
    acked: &Mutex<Vec<Acked>>,
    partition: Option<i32>,
    since: Instant,
    what: &str,
) -> Duration {
    let deadline = Instant::now() + STATE_TIMEOUT;
    loop {
        let first = acked
            .lock()
            .unwrap()
            .iter()
            .filter(|a| a.at > since && partition.is_none_or(|p| a.partition == p))
            .map(|a| a.at)
            .min();
        if let Some(at) = first {
            return at.duration_since(since);
        }
        assert!(Instant::now() < deadline, "{what}: no acknowledgement");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Reads every record of `topic`/`partition` below a high watermark of at least `at_least`;
/// values as sequence numbers.
fn read_partition(bootstrap: &str, topic: &str, partition: i32, at_least: i64) -> Vec<u64> {
    let consumer = rdk::consumer(bootstrap);
    let deadline = Instant::now() + STATE_TIMEOUT;
    let high = loop {
        let high = consumer
            .fetch_watermarks(topic, partition, Duration::from_secs(10))
            .map(|(_, h)| h)
            .unwrap_or(-1);
        if high >= at_least || Instant::now() > deadline {
            break high;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    if high <= 0 {
        return Vec::new();
    }
    rdk::consume_partition(
        &consumer,
        topic,
        partition,
        Offset::Beginning,
        usize::try_from(high).unwrap(),
        STATE_TIMEOUT,
    )
    .into_iter()
    .map(|r| {
        String::from_utf8(r.value.unwrap_or_default())
            .unwrap()
            .parse()
            .unwrap()
    })
    .collect()
}

#[test]
fn three_node_compose_cluster_survives_kill_and_partition() {
    let started = Instant::now();
    let compose = match docker_and_compose() {
        Ok(c) => c,
        Err(why) => {
            eprintln!("SKIPPED: docker tests: {why}");
            return;
        }
    };
    let kcat = find_kcat();
    if !require(kcat.is_some(), "kcat") {
        return;
    }
    let kcat = kcat.unwrap();

    let (image, owns_image) = image_under_test();
    let ports = [free_port(), free_port(), free_port()];
    let cluster = Cluster {
        deployment: Deployment {
            compose,
            project: unique_name("sluice-cluster"),
            file: workspace_root().join("docker").join("compose.yaml"),
            env: BTreeMap::from([
                ("SLUICE_IMAGE", image.clone()),
                ("SLUICE_PORT_1", ports[0].to_string()),
                ("SLUICE_PORT_2", ports[1].to_string()),
                ("SLUICE_PORT_3", ports[2].to_string()),
                ("SLUICE_PUBLISH_ADDR", "127.0.0.1".to_owned()),
                ("SLUICE_ADVERTISED_HOST", "localhost".to_owned()),
                ("SLUICE_LOG_LEVEL", "info".to_owned()),
                ("SLUICE_SET", SETTINGS.to_owned()),
            ]),
            image,
            owns_image,
            extra_containers: Vec::new(),
        },
        ports,
    };
    if cluster.deployment.owns_image {
        eprintln!("{}", build_image(&cluster.deployment.image));
    }

    // Up: three healthy containers, each node listing all three at their advertised listeners.
    cluster.deployment.compose_ok(&["up", "-d"]);
    let up = Instant::now();
    for id in 1..=3 {
        cluster.deployment.wait_healthy(&cluster.container(id));
    }
    let formed = cluster.wait_for_brokers();
    eprintln!(
        "TIMING cluster formed {:?} after `up` ({formed:?} after all were healthy)",
        up.elapsed()
    );
    let bootstrap = cluster.bootstrap();
    let listing = kcat_ok(&kcat, &["-b", &bootstrap, "-L"], b"");
    for id in 1..=3 {
        let line = format!("broker {id} at localhost:{}", cluster.port(id));
        assert!(
            listing.contains(&line),
            "kcat -L lacks {line:?}:\n{listing}"
        );
    }

    // kcat: a topic auto-created with replication factor 3, produced and consumed in order.
    // One request in flight, as Kafka's documentation says a producer without idempotence
    // needs to keep its order across retries: the new leader can refuse the first batch while
    // it is still taking up the topic (NOT_LEADER_OR_FOLLOWER or UNKNOWN_TOPIC_OR_PARTITION, as
    // Kafka's does) and take the pipelined second a moment later, and the first's retry then
    // lands after it (CI on 2d161e6 read key-20 first, with nothing missing or twice).
    let kcat_topic = unique_topic("kcat-rf3");
    let input: String = (0..KCAT_RECORDS)
        .map(|i| format!("key-{i}:value-{i}\n"))
        .collect();
    let produced = kcat_succeeds(
        &kcat,
        &[
            "-b",
            &bootstrap,
            "-t",
            &kcat_topic,
            "-P",
            "-K:",
            "-X",
            "acks=all",
            "-X",
            "max.in.flight=1",
            "-X",
            "message.timeout.ms=60000",
        ],
        input.as_bytes(),
    );
    let consumed = read_from_beginning(&kcat, &bootstrap, &kcat_topic, COMMAND_TIMEOUT);
    let output = String::from_utf8_lossy(&consumed.stdout).into_owned();
    if !consumed.success() || output != input {
        // Read again a little later: tells a reader that saw too little too early from
        // records that are not there at all.
        std::thread::sleep(Duration::from_secs(2));
        let again = read_from_beginning(&kcat, &bootstrap, &kcat_topic, COMMAND_TIMEOUT);
        panic!(
            "kcat did not read back what it produced: {}\nconsumer exit {:?}, stderr:\n{}\n\
             producer stderr:\n{}\nread again 2 s later: {}\n{}",
            describe_difference(&input, &output),
            consumed.code,
            consumed.stderr,
            produced.stderr,
            describe_difference(&input, &String::from_utf8_lossy(&again.stdout)),
            cluster.deployment.logs()
        );
    }
    let described = kcat_ok(&kcat, &["-b", &bootstrap, "-L", "-t", &kcat_topic], b"");
    // "partition 0, leader 1, replicas: 1,2,3, isrs: 1,2,3"
    let count_after = |line: &str, label: &str| {
        line.split(label)
            .nth(1)
            .map(|rest| rest.split(' ').next().unwrap_or("").trim_end_matches(','))
            .map(|ids| ids.split(',').filter(|s| !s.is_empty()).count())
    };
    assert!(
        described.lines().any(|l| l.contains("partition 0,")
            && count_after(l, "replicas: ") == Some(3)
            && count_after(l, "isrs: ") == Some(3)),
        "{kcat_topic} does not have 3 replicas and 3 in sync:\n{described}"
    );

    // librdkafka: an RF=3 topic that tolerates one node down for acks=all.
    let topic = unique_topic("docker-failover");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let admin = rdk::admin(&bootstrap);
        let new_topic = NewTopic::new(&topic, PARTITIONS, TopicReplication::Fixed(3))
            .set("min.insync.replicas", "2");
        for r in admin
            .create_topics([&new_topic], &rdk::admin_options())
            .await
            .unwrap()
        {
            if let Err((name, code)) = r {
                panic!("CreateTopics {name}: {code:?}");
            }
        }
    });
    let full_isr = |ps: &[PartitionInfo]| {
        ps.len() == usize::try_from(PARTITIONS).unwrap()
            && ps.iter().all(|p| p.leader > 0 && p.isr.len() == 3)
    };
    cluster.wait_for_partitions(&topic, None, "new topic fully replicated", full_isr);

    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<Acked>>> = Arc::new(Mutex::new(Vec::new()));
    let load = start_load(
        bootstrap.clone(),
        topic.clone(),
        Arc::clone(&stop),
        Arc::clone(&acked),
    );
    wait_for_ack_after(&acked, None, Instant::now(), "the load started");
    std::thread::sleep(Duration::from_secs(2));

    // docker kill the leader of partition 0: a new leader takes over, produce resumes; after
    // docker start the node catches up and is back in every ISR.
    let client = cluster.metadata_client(None);
    let parts = TestCluster::partitions_listed(&client, &topic);
    let victim = parts[0].leader;
    assert!(victim > 0, "partition 0 has no leader: {parts:?}");
    let victim_container = cluster.container(victim);
    docker(&["kill", &victim_container]);
    let killed = Instant::now();
    eprintln!("docker kill node {victim}, leader of partition 0");
    let failover = wait_for_ack_after(&acked, Some(0), killed, "partition 0 after the kill");
    cluster.wait_for_partitions(&topic, Some(victim), "a new leader", |ps| {
        ps.iter().all(|p| p.leader > 0 && p.leader != victim)
    });
    docker(&["start", &victim_container]);
    let rejoin = cluster.wait_for_partitions(&topic, None, "ISR full after docker start", full_isr);
    eprintln!(
        "TIMING docker kill: partition 0 acknowledged again after {failover:?}; \
         node {victim} back in every ISR {rejoin:?} after docker start"
    );
    cluster.wait_for_brokers();

    // docker network disconnect a follower: it leaves the ISR, produce goes on; after
    // docker network connect it is back in every ISR.
    let parts = TestCluster::partitions_listed(&client, &topic);
    let cut = (1..=3)
        .find(|id| *id != parts[0].leader)
        .expect("a follower");
    let cut_container = cluster.container(cut);
    let network = docker(&[
        "inspect",
        "-f",
        "{{range $name, $_ := .NetworkSettings.Networks}}{{$name}}{{end}}",
        &cut_container,
    ]);
    docker(&["network", "disconnect", &network, &cut_container]);
    let disconnected = Instant::now();
    eprintln!("docker network disconnect node {cut} from {network}");
    cluster.wait_for_partitions(&topic, Some(cut), "ISR without the cut node", |ps| {
        ps.iter().all(|p| !p.isr.contains(&cut) && p.leader > 0)
    });
    let shrunk = Instant::now();
    let going_on = wait_for_ack_after(&acked, None, shrunk, "produce while a node is cut off");
    docker(&[
        "network",
        "connect",
        "--alias",
        SERVICES[usize::try_from(cut - 1).unwrap()],
        &network,
        &cut_container,
    ]);
    let expand =
        cluster.wait_for_partitions(&topic, None, "ISR full after network connect", full_isr);
    eprintln!(
        "TIMING network disconnect: node {cut} out of every ISR after {:?} \
         (acks went on {going_on:?} later); back in every ISR {expand:?} after connect",
        shrunk.duration_since(disconnected)
    );
    cluster.wait_for_brokers();

    // Nothing acknowledged is lost, nothing is stored twice, the order holds.
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let (sent, failed) = load.join().unwrap();
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 500,
        "too few records acknowledged: {}",
        acked.len()
    );
    let mut lost = 0usize;
    for p in 0..PARTITIONS {
        let want = i64::try_from(acked.iter().filter(|a| a.partition == p).count()).unwrap();
        let seqs = read_partition(&bootstrap, &topic, p, want);
        let unique: HashSet<u64> = seqs.iter().copied().collect();
        assert_eq!(
            unique.len(),
            seqs.len(),
            "partition {p} holds a record twice"
        );
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "partition {p} is out of order"
        );
        lost += acked
            .iter()
            .filter(|a| a.partition == p && !unique.contains(&a.seq))
            .count();
    }
    eprintln!(
        "FIGURES docker cluster: sent {sent}, acknowledged {}, failed {failed}, lost {lost}",
        acked.len()
    );
    assert_eq!(lost, 0, "acknowledged records were lost");

    // docker stop (SIGTERM) of the whole cluster: every node exits 0 inside Docker's grace.
    let containers: Vec<String> = (1..=3).map(|id| cluster.container(id)).collect();
    let stop_started = Instant::now();
    cluster.deployment.compose_ok(&["stop", "-t", "10"]);
    let stop_took = stop_started.elapsed();
    for (i, c) in containers.iter().enumerate() {
        let code = docker(&["inspect", "-f", "{{.State.ExitCode}}", c]);
        assert_eq!(code, "0", "node {} exit code after stop", i + 1);
    }
    assert!(
        stop_took < Duration::from_secs(10),
        "compose stop took {stop_took:?}"
    );
    eprintln!("TIMING compose stop {stop_took:?}, every node exited 0");

    // down -v leaves nothing behind.
    cluster.deployment.compose_ok(&["down", "-v", "-t", "5"]);
    let left = cluster.deployment.leftovers();
    assert!(left.is_empty(), "left after `down -v`: {left:?}");
    eprintln!("TIMING whole test {:?}", started.elapsed());
}
