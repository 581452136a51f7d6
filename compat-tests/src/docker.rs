//! Docker and compose plumbing for the container tests (`tests/docker.rs`,
//! `tests/docker_cluster.rs`): running commands with a deadline, telling whether a Docker
//! engine and a compose tool are there, building the image with `docker/build.sh`, and
//! [`Deployment`], a compose project that tears itself down (containers, networks, named
//! volumes, and the image if the test built it) when dropped, even after a failed step.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::sluice_bin;
use crate::{unique_topic, workspace_root};

/// A docker/compose command that takes longer than this is stuck.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
/// From `up` to the first successful health check (the image checks every 5 s).
pub const HEALTHY_TIMEOUT: Duration = Duration::from_secs(60);

/// What a finished command left behind.
#[derive(Debug)]
pub struct Output {
    /// Exit code; `None` if killed by a signal or by our deadline.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Runs `program args` with extra environment, no stdin, and a deadline.
pub fn run(
    program: &str,
    args: &[&str],
    env: &BTreeMap<&str, String>,
    timeout: Duration,
) -> Output {
    let started = Instant::now();
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Settings the compose files pass through when set; the caller's shell must not leak in.
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
pub fn docker(args: &[&str]) -> String {
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
pub fn docker_unavailable() -> Option<String> {
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
pub fn compose_command() -> Option<Vec<String>> {
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

/// The compose tool, or why the docker tests are skipped (printed by the caller). They are
/// skipped, in CI too, when no Docker engine answers: not every machine has one.
pub fn docker_and_compose() -> Result<Vec<String>, String> {
    if let Some(why) = docker_unavailable() {
        return Err(why);
    }
    compose_command()
        .ok_or_else(|| "neither `docker compose` nor `docker-compose` works".to_string())
}

/// Lowercase, unique to this run: fits both a compose project name and an image tag.
pub fn unique_name(prefix: &str) -> String {
    unique_topic(prefix).to_ascii_lowercase()
}

/// The image to test: `SLUICE_DOCKER_IMAGE` if set (built beforehand, never removed), else a
/// new unique tag the test builds with [`build_image`] and owns.
pub fn image_under_test() -> (String, bool) {
    match std::env::var("SLUICE_DOCKER_IMAGE") {
        Ok(image) if !image.is_empty() => (image, false),
        _ => (format!("{}:test", unique_name("sluice-compat")), true),
    }
}

/// Builds `tag` with `docker/build.sh --binary` from the broker binary the other compat tests
/// use (`SLUICE_BIN`, else `target/debug/sluice`), so no release build is needed. Returns the
/// script's summary line (with the image size).
pub fn build_image(tag: &str) -> String {
    let binary = sluice_bin();
    assert!(
        binary.is_file(),
        "{} is missing: build it with `cargo build -p sluice-broker --bin sluice` \
         (scripts/test.sh does)",
        binary.display()
    );
    let script = workspace_root().join("docker").join("build.sh");
    let binary_arg = binary.to_string_lossy().into_owned();
    let build = run(
        &script.to_string_lossy(),
        &["--binary", &binary_arg, "--tag", tag],
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
    build
        .stderr
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// A compose project and, if the test built it, an image. Dropping it tears both down (`down
/// -v`, then `rmi`), so a failed step leaves nothing running; on a panic it first prints the
/// project's logs.
pub struct Deployment {
    /// `docker compose` or `docker-compose`, split into program and leading arguments.
    pub compose: Vec<String>,
    /// `-p`: unique per run, so parallel runs and leftovers from old runs never collide.
    pub project: String,
    /// The compose file.
    pub file: PathBuf,
    /// Variables the compose file reads.
    pub env: BTreeMap<&'static str, String>,
    /// The image the project runs.
    pub image: String,
    /// Whether the image was built by this test and is removed by `Drop`.
    pub owns_image: bool,
    /// Containers the test started outside compose (`docker run --name`), removed by `Drop`.
    pub extra_containers: Vec<String>,
}

impl Deployment {
    pub fn compose(&self, args: &[&str]) -> Output {
        let file = self.file.to_string_lossy().into_owned();
        let mut all: Vec<&str> = self.compose.iter().skip(1).map(String::as_str).collect();
        all.extend(["-p", &self.project, "-f", &file]);
        all.extend(args);
        run(&self.compose[0], &all, &self.env, COMMAND_TIMEOUT)
    }

    pub fn compose_ok(&self, args: &[&str]) -> String {
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

    /// The id of the container of `service`.
    pub fn container(&self, service: &str) -> String {
        let id = self.compose_ok(&["ps", "-q", service]).trim().to_owned();
        assert!(!id.is_empty(), "compose ps shows no {service} container");
        id
    }

    /// The last lines of every service's log.
    pub fn logs(&self) -> String {
        let out = self.compose(&["logs", "--no-color", "--tail", "60"]);
        format!("{}{}", out.stdout, out.stderr)
    }

    /// Waits until Docker's health check of container `id` has passed.
    pub fn wait_healthy(&self, id: &str) {
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
    pub fn leftovers(&self) -> Vec<String> {
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
        for name in &self.extra_containers {
            let _ = run("docker", &["rm", "-f", name], &empty, COMMAND_TIMEOUT);
        }
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
