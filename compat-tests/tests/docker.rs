//! The container image (`docker/build.sh`) and the single-node compose file
//! (`docker/compose.single.yaml`) on a real Docker engine.
//!
//! One test walks the whole life of a deployment: build the image from the broker binary the
//! other compat tests use (`SLUICE_BIN`, else `target/debug/sluice`; `build.sh --binary`, so no
//! release build), bring the compose project up under a unique project name on a free host
//! port, wait for Docker to report it healthy, produce and consume with kcat through the
//! advertised listener, check the broker runs as the non-root user and that another container
//! finds it by name through Docker's DNS (what the cluster will rely on), `docker stop` it
//! (exit 0 well inside the 10 s grace), bring it back on the same named volume and read the
//! same records, then `down -v` and check that no container, network or volume of the project
//! is left. A guard tears everything down (and removes the image) even when a step fails.
//!
//! `SLUICE_DOCKER_IMAGE=sluice:latest` tests an image built beforehand instead (say, the
//! release image from `docker/build.sh`); it is not removed afterwards.
//!
//! Without a Docker engine (`docker info` fails) or a compose tool (`docker compose` v2 or
//! `docker-compose`), the test prints why it is skipped and passes, in CI too: not every CI
//! machine has Docker.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use compat_tests::docker::{
    build_image, docker, docker_and_compose, image_under_test, run, unique_name, Deployment,
    COMMAND_TIMEOUT,
};
use compat_tests::kcat::{find_kcat, read_from_beginning, run_kcat};
use compat_tests::ports::free_port;
use compat_tests::{require, unique_topic, workspace_root};

/// Records produced and read back.
const N: usize = 1_000;
/// Docker's default stop grace period; after it, Docker sends SIGKILL (exit 137).
const STOP_GRACE: Duration = Duration::from_secs(10);
/// The uid build.sh gives the `sluice` user.
const SLUICE_UID: &str = "10001";

fn produce(kcat: &std::path::Path, bootstrap: &str, topic: &str, input: &str) {
    let out = run_kcat(
        kcat,
        &[
            "-b",
            bootstrap,
            "-t",
            topic,
            "-P",
            "-K:",
            "-X",
            "acks=all",
            "-X",
            "message.timeout.ms=60000",
        ],
        input.as_bytes(),
        COMMAND_TIMEOUT,
    );
    assert!(
        out.success(),
        "kcat -P failed (exit {:?}):\n{}",
        out.code,
        out.stderr
    );
}

fn consume(kcat: &std::path::Path, bootstrap: &str, topic: &str) -> String {
    let out = read_from_beginning(kcat, bootstrap, topic, COMMAND_TIMEOUT);
    assert!(
        out.success(),
        "kcat -C failed (exit {:?}):\n{}",
        out.code,
        out.stderr
    );
    String::from_utf8(out.stdout).expect("kcat output is UTF-8")
}

#[test]
fn single_node_image_and_compose() {
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
    let root = workspace_root();

    let (image, owns_image) = image_under_test();
    let port = free_port();
    let project = unique_name("sluice-test");
    let resolver = format!("{project}-resolver");
    let deployment = Deployment {
        compose,
        extra_containers: vec![resolver.clone()],
        project,
        file: root.join("docker").join("compose.single.yaml"),
        env: BTreeMap::from([
            ("SLUICE_IMAGE", image.clone()),
            ("SLUICE_PORT", port.to_string()),
            ("SLUICE_PUBLISH_ADDR", "127.0.0.1".to_owned()),
            ("SLUICE_ADVERTISED_HOST", "localhost".to_owned()),
            ("SLUICE_LOG_LEVEL", "info".to_owned()),
        ]),
        image,
        owns_image,
    };

    if deployment.owns_image {
        eprintln!("{}", build_image(&deployment.image));
    }

    // Up, healthy, and running as the unprivileged user.
    deployment.compose_ok(&["up", "-d"]);
    let id = deployment.container("sluice");
    deployment.wait_healthy(&id);
    // `docker top` passes these to ps on the host; it insists on a pid column. A health check
    // running at that moment is listed too, under the same user.
    let top = docker(&["top", &id, "-o", "pid,uid,args"]);
    let uids: Vec<&str> = top
        .lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().nth(1))
        .collect();
    assert!(
        !uids.is_empty() && uids.iter().all(|uid| *uid == SLUICE_UID),
        "every process in the container must run as uid {SLUICE_UID}:\n{top}"
    );

    // Metadata names the advertised listener, and clients get through it.
    let bootstrap = format!("localhost:{port}");
    let metadata = run_kcat(&kcat, &["-b", &bootstrap, "-L"], b"", COMMAND_TIMEOUT);
    let metadata_out = String::from_utf8_lossy(&metadata.stdout).into_owned();
    assert!(
        metadata.success() && metadata_out.contains(&format!("broker 1 at {bootstrap}")),
        "kcat -L does not show the advertised listener {bootstrap}:\n{metadata_out}{}",
        metadata.stderr
    );
    let topic = unique_topic("docker");
    let input: String = (0..N).map(|i| format!("key-{i}:value-{i}\n")).collect();
    produce(&kcat, &bootstrap, &topic, &input);
    assert_eq!(consume(&kcat, &bootstrap, &topic), input);

    // Another container on the project's network reaches the broker by its service name:
    // getaddrinfo in the scratch image resolves through Docker's DNS.
    let network = docker(&[
        "inspect",
        "-f",
        "{{range $name, $_ := .NetworkSettings.Networks}}{{$name}}{{end}}",
        &id,
    ]);
    docker(&[
        "run",
        "--rm",
        "--name",
        &resolver,
        "--network",
        &network,
        "--no-healthcheck",
        &deployment.image,
        "healthcheck",
        "--bootstrap",
        "sluice:9092",
    ]);

    // SIGTERM to PID 1: a clean exit, well before Docker would resort to SIGKILL.
    let stop = run(
        "docker",
        &["stop", "-t", &STOP_GRACE.as_secs().to_string(), &id],
        &BTreeMap::new(),
        COMMAND_TIMEOUT,
    );
    assert!(stop.success(), "docker stop failed: {}", stop.stderr);
    let exit_code = docker(&["inspect", "-f", "{{.State.ExitCode}}", &id]);
    assert_eq!(
        exit_code,
        "0",
        "exit code after docker stop\n{}",
        deployment.logs()
    );
    assert!(
        stop.elapsed < STOP_GRACE,
        "docker stop took {:?} (grace {STOP_GRACE:?})",
        stop.elapsed
    );
    assert!(
        deployment.logs().contains("sluice stopped"),
        "no clean-shutdown line in the log:\n{}",
        deployment.logs()
    );
    eprintln!("docker stop took {:?}, exit code 0", stop.elapsed);

    // A new container on the same named volume serves the same records.
    deployment.compose_ok(&["down"]);
    let volumes = deployment.leftovers();
    assert!(
        volumes.len() == 1 && volumes[0].starts_with("volume "),
        "after `down` only the data volume should remain: {volumes:?}"
    );
    deployment.compose_ok(&["up", "-d"]);
    let id2 = deployment.container("sluice");
    assert_ne!(id, id2, "`up` after `down` must make a new container");
    deployment.wait_healthy(&id2);
    assert_eq!(consume(&kcat, &bootstrap, &topic), input);

    // `down -v` leaves nothing behind.
    deployment.compose_ok(&["down", "-v"]);
    let left = deployment.leftovers();
    assert!(left.is_empty(), "left after `down -v`: {left:?}");
}
