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
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use compat_tests::kcat::{find_kcat, run_kcat};
use compat_tests::ports::free_port;
use compat_tests::process::sluice_bin;
use compat_tests::{require, unique_topic, workspace_root};

/// Records produced and read back.
const N: usize = 1_000;
/// A docker/compose command that takes longer than this is stuck.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
/// From `up` to the first successful health check (the image checks every 5 s).
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(60);
/// Docker's default stop grace period; after it, Docker sends SIGKILL (exit 137).
const STOP_GRACE: Duration = Duration::from_secs(10);
/// The uid build.sh gives the `sluice` user.
const SLUICE_UID: &str = "10001";

/// What a finished command left behind.
struct Output {
    /// Exit code; `None` if killed by a signal or by our deadline.
    code: Option<i32>,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

impl Output {
    fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Runs `program args` with extra environment, no stdin, and a deadline.
fn run(program: &str, args: &[&str], env: &BTreeMap<&str, String>, timeout: Duration) -> Output {
    let started = Instant::now();
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Settings the compose file passes through when set; the caller's shell must not leak in.
    command.env_remove("SLUICE_SET");
    command.envs(env.iter().map(|(k, v)| (k, v.as_str())));
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => panic!("cannot run {program}: {e}"),
    };
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let deadline = started + timeout;
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                timed_out = true;
                let _ = child.kill();
                break child.wait().ok();
            }
            Err(e) => panic!("cannot wait for {program}: {e}"),
        }
    };
    let elapsed = started.elapsed();
    let mut stderr = err.join().unwrap_or_default();
    if timed_out {
        stderr.push_str(&format!("\n[killed by the test after {timeout:?}]"));
    }
    Output {
        code: if timed_out {
            None
        } else {
            status.and_then(|s| s.code())
        },
        stdout: out.join().unwrap_or_default(),
        stderr,
        elapsed,
    }
}

/// Reads a child's pipe to the end on a thread, so a chatty child never blocks on a full pipe.
fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Runs a docker command that must succeed and returns its trimmed stdout.
fn docker(args: &[&str]) -> String {
    let out = run("docker", args, &BTreeMap::new(), COMMAND_TIMEOUT);
    assert!(
        out.success(),
        "docker {} failed (exit {:?}):\n{}{}",
        args.join(" "),
        out.code,
        out.stdout,
        out.stderr
    );
    out.stdout.trim().to_owned()
}

/// Why Docker cannot be used here, if it cannot.
fn docker_unavailable() -> Option<String> {
    let out = match Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdin(Stdio::null())
        .output()
    {
        Ok(o) => o,
        Err(e) => return Some(format!("the docker CLI cannot be run ({e})")),
    };
    if out.status.success() {
        return None;
    }
    Some(format!(
        "no Docker engine answers `docker info`: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    ))
}

/// The compose command: `docker compose` (v2 plugin) if present, else `docker-compose`.
fn compose_command() -> Option<Vec<String>> {
    let works = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    if works("docker", &["compose", "version"]) {
        Some(vec!["docker".into(), "compose".into()])
    } else if works("docker-compose", &["version"]) {
        Some(vec!["docker-compose".into()])
    } else {
        None
    }
}

/// A compose project and, if the test built it, an image. Dropping it tears both down, so a
/// failed step leaves nothing running; on a panic it first prints the broker's log.
struct Deployment {
    /// `docker compose` or `docker-compose`, split into program and leading arguments.
    compose: Vec<String>,
    /// `-p`: unique per run, so parallel runs and leftovers from old runs never collide.
    project: String,
    /// `docker/compose.single.yaml`.
    file: PathBuf,
    /// Variables the compose file reads.
    env: BTreeMap<&'static str, String>,
    /// The image the project runs.
    image: String,
    /// Whether the image was built by this test and is removed by `Drop`.
    owns_image: bool,
    /// Name of the helper container that checks name resolution (`--rm`, removed by `Drop`
    /// too in case the test was stopped while it ran).
    resolver: String,
}

impl Deployment {
    fn compose(&self, args: &[&str]) -> Output {
        let file = self.file.to_string_lossy().into_owned();
        let mut all: Vec<&str> = self.compose.iter().skip(1).map(String::as_str).collect();
        all.extend(["-p", &self.project, "-f", &file]);
        all.extend(args);
        run(&self.compose[0], &all, &self.env, COMMAND_TIMEOUT)
    }

    fn compose_ok(&self, args: &[&str]) -> String {
        let out = self.compose(args);
        assert!(
            out.success(),
            "compose {} failed (exit {:?}):\n{}{}",
            args.join(" "),
            out.code,
            out.stdout,
            out.stderr
        );
        out.stdout
    }

    /// The id of the broker's container.
    fn container(&self) -> String {
        let id = self.compose_ok(&["ps", "-q", "sluice"]).trim().to_owned();
        assert!(!id.is_empty(), "compose ps shows no sluice container");
        id
    }

    fn logs(&self) -> String {
        let out = self.compose(&["logs", "--no-color", "--tail", "60"]);
        format!("{}{}", out.stdout, out.stderr)
    }

    /// Waits until Docker's health check of `id` has passed.
    fn wait_healthy(&self, id: &str) {
        let deadline = Instant::now() + HEALTHY_TIMEOUT;
        loop {
            let state = docker(&[
                "inspect",
                "-f",
                "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}",
                id,
            ]);
            match state.as_str() {
                "running healthy" => return,
                s if s.starts_with("running") && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(250))
                }
                s => panic!(
                    "container not healthy after {HEALTHY_TIMEOUT:?} (state: {s})\n{}",
                    self.logs()
                ),
            }
        }
    }

    /// Ids of what still carries the project's label, by kind.
    fn leftovers(&self) -> Vec<String> {
        let label = format!("label=com.docker.compose.project={}", self.project);
        [
            ("container", vec!["ps", "-a"]),
            ("network", vec!["network", "ls"]),
            ("volume", vec!["volume", "ls"]),
        ]
        .into_iter()
        .flat_map(|(kind, mut args)| {
            args.extend(["-q", "--filter", &label]);
            docker(&args)
                .lines()
                .map(|id| format!("{kind} {id}"))
                .collect::<Vec<_>>()
        })
        .collect()
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("compose logs of {}:\n{}", self.project, self.logs());
        }
        let empty = BTreeMap::new();
        let _ = run(
            "docker",
            &["rm", "-f", &self.resolver],
            &empty,
            COMMAND_TIMEOUT,
        );
        let down = self.compose(&["down", "-v", "--remove-orphans", "-t", "2"]);
        if !down.success() {
            eprintln!(
                "cleanup: compose down -v of {} failed:\n{}",
                self.project, down.stderr
            );
        }
        if self.owns_image {
            let rmi = run(
                "docker",
                &["rmi", "-f", &self.image],
                &empty,
                COMMAND_TIMEOUT,
            );
            if !rmi.success() {
                eprintln!("cleanup: docker rmi {} failed:\n{}", self.image, rmi.stderr);
            }
        }
    }
}

/// Lowercase, unique to this run: fits both a compose project name and an image tag.
fn unique_name(prefix: &str) -> String {
    unique_topic(prefix).to_ascii_lowercase()
}

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
    let out = run_kcat(
        kcat,
        &[
            "-b",
            bootstrap,
            "-t",
            topic,
            "-C",
            "-o",
            "beginning",
            "-e",
            "-q",
            "-f",
            "%k:%s\n",
        ],
        b"",
        COMMAND_TIMEOUT,
    );
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
    if let Some(why) = docker_unavailable() {
        eprintln!("SKIPPED: docker tests: {why}");
        return;
    }
    let Some(compose) = compose_command() else {
        eprintln!("SKIPPED: docker tests: neither `docker compose` nor `docker-compose` works");
        return;
    };
    let kcat = find_kcat();
    if !require(kcat.is_some(), "kcat") {
        return;
    }
    let kcat = kcat.unwrap();
    let root = workspace_root();

    let (image, owns_image) = match std::env::var("SLUICE_DOCKER_IMAGE") {
        Ok(image) if !image.is_empty() => (image, false),
        _ => (format!("{}:test", unique_name("sluice-compat")), true),
    };
    let port = free_port();
    let project = unique_name("sluice-test");
    let deployment = Deployment {
        compose,
        resolver: format!("{project}-resolver"),
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
        let binary = sluice_bin();
        assert!(
            binary.is_file(),
            "{} is missing: build it with `cargo build -p sluice-broker --bin sluice` \
             (scripts/test.sh does)",
            binary.display()
        );
        let script = root.join("docker").join("build.sh");
        let binary_arg = binary.to_string_lossy().into_owned();
        let build = run(
            &script.to_string_lossy(),
            &["--binary", &binary_arg, "--tag", &deployment.image],
            &BTreeMap::new(),
            COMMAND_TIMEOUT,
        );
        assert!(
            build.success(),
            "docker/build.sh failed (exit {:?}):\n{}{}",
            build.code,
            build.stdout,
            build.stderr
        );
        eprintln!("{}", build.stderr.trim());
    }

    // Up, healthy, and running as the unprivileged user.
    deployment.compose_ok(&["up", "-d"]);
    let id = deployment.container();
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
        &deployment.resolver,
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
    let id2 = deployment.container();
    assert_ne!(id, id2, "`up` after `down` must make a new container");
    deployment.wait_healthy(&id2);
    assert_eq!(consume(&kcat, &bootstrap, &topic), input);

    // `down -v` leaves nothing behind.
    deployment.compose_ok(&["down", "-v"]);
    let left = deployment.leftovers();
    assert!(left.is_empty(), "left after `down -v`: {left:?}");
}
