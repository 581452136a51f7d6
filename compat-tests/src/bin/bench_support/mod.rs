//! Helpers shared by the benchmark binaries (`latency_gen`, `load_gen`,
//! `fetch_client`, `disk_limit`, `min_server`, `min_client`, `loopback_limit`), included
//! with `#[path]` so they stay out of the compat-tests library.
//!
//! Everything here is for `compat-tests/bench/run.sh`: arguments are
//! `--key value` pairs, results are one JSON object on stdout, errors are
//! strings that end the process with a non-zero status.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::str::FromStr;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Waits for the `i`-th send of a fixed schedule of one send every `interval_ns` from `start`
/// and returns its due time in nanoseconds from `start` (the latency clients time from it, so
/// a sender that falls behind counts against the server).
pub fn sleep_until_due(start: std::time::Instant, i: u64, interval_ns: f64) -> u64 {
    let due_ns = (i as f64 * interval_ns) as u64;
    let due = start + std::time::Duration::from_nanos(due_ns);
    let now = std::time::Instant::now();
    if due > now {
        std::thread::sleep(due - now);
    }
    due_ns
}

/// The error type of every benchmark binary: a message for a human.
pub type BenchResult<T> = Result<T, String>;

/// `--key value` and `--flag` command-line arguments.
pub struct Args {
    /// Values by key (without the leading `--`); a flag maps to `"true"`.
    values: HashMap<String, String>,
    /// Repeated `--set k=v` arguments, in order.
    sets: Vec<(String, String)>,
    /// Arguments that are not options, in order (sub-commands).
    positional: Vec<String>,
}

impl Args {
    /// Parses `std::env::args()`. An option followed by another option (or
    /// by nothing) is a flag.
    pub fn parse() -> BenchResult<Self> {
        let raw: Vec<String> = std::env::args().skip(1).collect();
        let mut values = HashMap::new();
        let mut sets = Vec::new();
        let mut positional = Vec::new();
        let mut i = 0;
        while i < raw.len() {
            let arg = &raw[i];
            if let Some(key) = arg.strip_prefix("--") {
                let value = match raw.get(i + 1) {
                    Some(v) if !v.starts_with("--") => {
                        i += 1;
                        v.clone()
                    }
                    _ => "true".to_owned(),
                };
                if key == "set" {
                    let (k, v) = value
                        .split_once('=')
                        .ok_or_else(|| format!("--set wants key=value, got {value}"))?;
                    sets.push((k.to_owned(), v.to_owned()));
                } else {
                    values.insert(key.to_owned(), value);
                }
            } else {
                positional.push(arg.clone());
            }
            i += 1;
        }
        Ok(Self {
            values,
            sets,
            positional,
        })
    }

    /// The value of `--key` parsed as `T`, or `default` when absent.
    pub fn get<T: FromStr>(&self, key: &str, default: T) -> BenchResult<T> {
        match self.values.get(key) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("--{key}: cannot parse {v:?}")),
        }
    }

    /// The value of `--key`, which must be given.
    pub fn required(&self, key: &str) -> BenchResult<String> {
        self.values
            .get(key)
            .cloned()
            .ok_or_else(|| format!("--{key} is required"))
    }

    /// True when `--key` was given, with or without a value.
    pub fn has(&self, key: &str) -> bool {
        self.values.contains_key(key)
    }

    /// True when `--key` was given as a flag (or `--key true`).
    pub fn flag(&self, key: &str) -> bool {
        self.values.get(key).is_some_and(|v| v == "true")
    }

    /// The `--set k=v` pairs (extra librdkafka properties).
    pub fn sets(&self) -> &[(String, String)] {
        &self.sets
    }

    /// The first positional argument (the sub-command), if any.
    pub fn command(&self) -> Option<&str> {
        self.positional.first().map(String::as_str)
    }
}

/// Percentiles of a latency sample, in microseconds.
pub struct Percentiles {
    /// Number of samples.
    pub count: usize,
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

impl Percentiles {
    /// Computes nearest-rank percentiles of `samples_ns` (sorted in place)
    /// and converts them to microseconds.
    pub fn from_ns(samples_ns: &mut [u64]) -> Self {
        samples_ns.sort_unstable();
        let n = samples_ns.len();
        let at = |q: f64| -> f64 {
            if n == 0 {
                return f64::NAN;
            }
            // Nearest rank: the smallest sample with at least q of the
            // samples at or below it.
            let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
            samples_ns.get(rank - 1).copied().unwrap_or(0) as f64 / 1000.0
        };
        let mean = if n == 0 {
            f64::NAN
        } else {
            samples_ns.iter().map(|&v| v as f64).sum::<f64>() / n as f64 / 1000.0
        };
        Self {
            count: n,
            p50: at(0.50),
            p99: at(0.99),
            p999: at(0.999),
            max: at(1.0),
            mean,
        }
    }

    /// `{"count":..,"p50":..,...}` (microseconds).
    pub fn to_json(&self) -> String {
        format!(
            "{{\"count\":{},\"p50\":{},\"p99\":{},\"p999\":{},\"max\":{},\"mean\":{}}}",
            self.count,
            json_f64(self.p50),
            json_f64(self.p99),
            json_f64(self.p999),
            json_f64(self.max),
            json_f64(self.mean)
        )
    }
}

/// A float as JSON (`null` for NaN/infinite), rounded to 3 decimals.
pub fn json_f64(v: f64) -> String {
    if v.is_finite() {
        format!("{:.3}", v)
    } else {
        "null".to_owned()
    }
}

/// A string as a JSON string literal.
pub fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Payload contents for produced messages.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PayloadKind {
    /// JSON-like event text with random fields: compresses about 2-4x, like
    /// real application data (an all-zero or repeated pattern would flatter
    /// compression).
    Json,
    /// Random bytes: incompressible.
    Random,
}

impl FromStr for PayloadKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "json" => Ok(Self::Json),
            "random" => Ok(Self::Random),
            other => Err(format!("unknown payload kind {other} (json, random)")),
        }
    }
}

const EVENTS: &[&str] = &[
    "page_view",
    "add_to_cart",
    "checkout",
    "login",
    "logout",
    "search",
    "click",
    "purchase",
];
const COUNTRIES: &[&str] = &["DE", "FR", "US", "GB", "JP", "BR", "IN", "NL", "SE", "ES"];
const PATHS: &[&str] = &[
    "/products",
    "/cart",
    "/checkout/payment",
    "/search",
    "/account/orders",
    "/help/faq",
    "/category/shoes",
];
const AGENTS: &[&str] = &[
    "chrome-124",
    "safari-17",
    "firefox-125",
    "edge-124",
    "app-ios-5.2",
];

/// One JSON-like event: field names and enumerations repeat (as in real
/// application logs) while ids, times, amounts and addresses are random.
fn json_event(rng: &mut StdRng, out: &mut String) {
    let pick = |rng: &mut StdRng, list: &[&'static str]| -> &'static str {
        list.get(rng.gen_range(0..list.len()))
            .copied()
            .unwrap_or("")
    };
    let _ = write!(
        out,
        "{{\"ts\":{},\"event\":\"{}\",\"user_id\":{},\"session\":\"{:016x}\",\
         \"trace_id\":\"{:016x}{:016x}\",\"url\":\"{}/{}?ref={}\",\"ip\":\"{}.{}.{}.{}\",\
         \"country\":\"{}\",\"amount\":{}.{:02},\"items\":{},\"latency_ms\":{},\"ua\":\"{}\"}}",
        1_700_000_000_000u64 + rng.gen_range(0..100_000_000u64),
        pick(rng, EVENTS),
        rng.gen_range(0..50_000_000u32),
        rng.gen::<u64>(),
        rng.gen::<u64>(),
        rng.gen::<u64>(),
        pick(rng, PATHS),
        rng.gen_range(0..100_000u32),
        pick(rng, &["email", "ad", "direct", "social"]),
        rng.gen::<u8>(),
        rng.gen::<u8>(),
        rng.gen::<u8>(),
        rng.gen::<u8>(),
        pick(rng, COUNTRIES),
        rng.gen_range(0..10_000u32),
        rng.gen_range(0..100u32),
        rng.gen_range(1..20u32),
        rng.gen_range(0..5_000u32),
        pick(rng, AGENTS),
    );
}

/// `count` distinct payloads of exactly `size` bytes, deterministic for a
/// seed. Producers cycle through the pool in order, so a batch holds no
/// repeated payload unless it is larger than the pool.
pub fn payload_pool(kind: PayloadKind, size: usize, count: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..count.max(1))
        .map(|_| match kind {
            PayloadKind::Random => (0..size).map(|_| rng.gen::<u8>()).collect(),
            PayloadKind::Json => {
                let mut text = String::with_capacity(size + 512);
                text.push('[');
                while text.len() < size {
                    if text.len() > 1 {
                        text.push(',');
                    }
                    json_event(&mut rng, &mut text);
                }
                let mut bytes = text.into_bytes();
                bytes.truncate(size);
                bytes
            }
        })
        .collect()
}

/// Bytes as MB (10^6, as Kafka tools print).
pub fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

/// The outcome of a fixed-rate latency run (`latency_gen`, `latency_lean`): printed as one
/// JSON object, then an error if anything failed or was lost.
pub struct LatencyRun<'a> {
    pub client: &'a str,
    pub topic: &'a str,
    pub rate: f64,
    pub duration_s: f64,
    pub size: usize,
    pub warmup_s: f64,
    /// Messages scheduled.
    pub total: u64,
    pub sent: u64,
    pub acked: u64,
    pub failed: u64,
    pub consumed: u64,
    /// Seconds from the start of the schedule to the last send.
    pub send_elapsed_s: f64,
    pub first_error: Option<String>,
    /// Produce-ack and end-to-end latencies of the counted messages, in nanoseconds.
    pub acks_ns: Vec<u64>,
    pub e2e_ns: Vec<u64>,
}

impl LatencyRun<'_> {
    /// Prints the JSON object; fails on the first error, or if a message was not both
    /// acknowledged and consumed.
    pub fn finish(mut self) -> BenchResult<()> {
        println!(
            "{{\"mode\":\"latency\",\"client\":{},\"topic\":{},\"rate\":{},\"duration_s\":{},\"size\":{},\
             \"warmup_s\":{},\"sent\":{},\"acked\":{},\"failed\":{},\"consumed\":{},\
             \"achieved_rate\":{},\"first_error\":{},\"produce_ack_us\":{},\"e2e_us\":{}}}",
            json_str(self.client),
            json_str(self.topic),
            json_f64(self.rate),
            json_f64(self.duration_s),
            self.size,
            json_f64(self.warmup_s),
            self.sent,
            self.acked,
            self.failed,
            self.consumed,
            json_f64(self.sent as f64 / self.send_elapsed_s),
            self.first_error
                .as_deref()
                .map(json_str)
                .unwrap_or_else(|| "null".to_owned()),
            Percentiles::from_ns(&mut self.acks_ns).to_json(),
            Percentiles::from_ns(&mut self.e2e_ns).to_json()
        );
        if let Some(e) = self.first_error {
            return Err(e);
        }
        if self.acked < self.total || self.consumed < self.total {
            return Err(format!(
                "{} acknowledged and {} consumed of {} messages",
                self.acked, self.consumed, self.total
            ));
        }
        Ok(())
    }
}
