//! The Python clients (confluent-kafka, kafka-python, aiokafka), each running
//! a produce-then-consume script from `compat-tests/python/` against its own
//! broker. The script decides pass/fail (exit status 0) and prints the
//! mismatches; this side creates the topic and enforces a deadline. The
//! interpreter is `<workspace>/.venv/bin/python` (made by `scripts/test.sh`);
//! without it the tests are skipped, except in CI (`CI=true`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use compat_tests::{rdk, require, unique_topic, workspace_root, SluiceProcess};

const PARTITIONS: i32 = 3;
const COUNT: usize = 2_000;
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);

fn venv_python() -> Option<PathBuf> {
    let python = workspace_root().join(".venv").join("bin").join("python");
    require(
        python.is_file(),
        &format!("{} (the test venv)", python.display()),
    )
    .then_some(python)
}

async fn run_script(script: &str) {
    let Some(python) = venv_python() else { return };
    let broker = SluiceProcess::start_default();
    let topic = unique_topic(script.trim_end_matches(".py"));
    rdk::create_topic(&broker.bootstrap(), &topic, PARTITIONS, &[]).await;
    let script_path = workspace_root()
        .join("compat-tests")
        .join("python")
        .join(script);
    let mut child = Command::new(&python)
        .arg(&script_path)
        .args(["--bootstrap", &broker.bootstrap()])
        .args(["--topic", &topic])
        .args(["--partitions", &PARTITIONS.to_string()])
        .args(["--count", &COUNT.to_string()])
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} {}: {e}",
                python.display(),
                script_path.display()
            )
        });
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + SCRIPT_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let stdout = out_thread.join().unwrap_or_default();
    let stderr = err_thread.join().unwrap_or_default();
    match status {
        Some(s) if s.success() => eprintln!("{script}: {}", stdout.trim()),
        Some(s) => panic!(
            "{script} failed ({s}):\nstdout:\n{stdout}\nstderr:\n{stderr}\nbroker log tail:\n{}",
            broker.log_tail()
        ),
        None => panic!(
            "{script} did not finish within {SCRIPT_TIMEOUT:?}:\nstdout:\n{stdout}\nstderr:\n{stderr}"
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confluent_kafka_roundtrip() {
    run_script("confluent_kafka_roundtrip.py").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_python_roundtrip() {
    run_script("kafka_python_roundtrip.py").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiokafka_roundtrip() {
    run_script("aiokafka_roundtrip.py").await;
}
