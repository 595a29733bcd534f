//! What the bench measures medic with: a `metrics` recorder that keeps the
//! runners' own counters and processing-time samples, and CPU time and
//! memory from `/proc`.

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Log-linear histogram of nanoseconds: 64 sub-buckets per power of two,
/// so a quantile is within 1.6 % of the exact sample.
pub struct Hist {
    buckets: Vec<AtomicU64>,
    max: AtomicU64,
}

const SUB: u32 = 6;

impl Hist {
    fn new() -> Hist {
        Hist {
            buckets: (0..(64 << SUB)).map(|_| AtomicU64::new(0)).collect(),
            max: AtomicU64::new(0),
        }
    }

    fn index(v: u64) -> usize {
        if v < (1 << SUB) {
            return v as usize;
        }
        let msb = 63 - v.leading_zeros();
        let shift = msb - SUB;
        (((shift + 1) << SUB) as u64 + ((v >> shift) & ((1 << SUB) - 1))) as usize
    }

    fn lower(i: usize) -> u64 {
        let i = i as u64;
        if i < (1 << SUB) {
            return i;
        }
        let shift = (i >> SUB) - 1;
        ((1 << SUB) | (i & ((1 << SUB) - 1))) << shift
    }

    /// Records `nanos`.
    pub fn record_nanos(&self, nanos: u64) {
        self.buckets[Self::index(nanos)].fetch_add(1, Ordering::Relaxed);
        self.max.fetch_max(nanos, Ordering::Relaxed);
    }

    fn reset(&self) {
        for b in &self.buckets {
            b.store(0, Ordering::Relaxed);
        }
        self.max.store(0, Ordering::Relaxed);
    }

    /// Samples, and the quantiles `qs` in nanoseconds (bucket midpoints) plus the maximum.
    pub fn summary(&self, qs: &[f64]) -> (u64, Vec<u64>, u64) {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        let max = self.max.load(Ordering::Relaxed);
        let values = qs
            .iter()
            .map(|q| {
                if total == 0 {
                    return 0;
                }
                let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
                let mut seen = 0;
                for (i, c) in counts.iter().enumerate() {
                    seen += c;
                    if seen >= rank {
                        let (lo, hi) = (Self::lower(i), Self::lower(i + 1));
                        return (lo + (hi - lo) / 2).min(max);
                    }
                }
                max
            })
            .collect();
        (total, values, max)
    }
}

impl metrics::HistogramFn for Hist {
    fn record(&self, seconds: f64) {
        self.record_nanos((seconds * 1e9) as u64);
    }
}

struct Count(AtomicU64);

impl metrics::CounterFn for Count {
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, Ordering::Relaxed);
    }

    fn absolute(&self, value: u64) {
        self.0.fetch_max(value, Ordering::Relaxed);
    }
}

/// `(metric, stage, topic)`.
type CounterKey = (&'static str, String, String);

/// The recorder: `medic_records_{consumed,produced}_total` per stage and
/// topic, `medic_processing_seconds` per stage; every other metric is dropped.
#[derive(Default)]
pub struct Probe {
    counters: Mutex<HashMap<CounterKey, Arc<Count>>>,
    histograms: Mutex<HashMap<String, Arc<Hist>>>,
}

pub const CONSUMED: &str = "medic_records_consumed_total";
pub const PRODUCED: &str = "medic_records_produced_total";
const PROCESSING: &str = "medic_processing_seconds";

fn label(key: &Key, name: &str) -> String {
    key.labels()
        .find(|l| l.key() == name)
        .map(|l| l.value().to_string())
        .unwrap_or_default()
}

impl Probe {
    /// Installs the process's recorder; call before any stage starts.
    pub fn install() -> &'static Probe {
        let probe: &'static Probe = Box::leak(Box::default());
        metrics::set_global_recorder(probe).expect("the bench installs the only recorder");
        probe
    }

    /// Zeroes every counter and histogram (between phases; no stage runs).
    pub fn reset(&self) {
        for c in self.counters.lock().unwrap().values() {
            c.0.store(0, Ordering::Relaxed);
        }
        for h in self.histograms.lock().unwrap().values() {
            h.reset();
        }
    }

    /// Current `(metric, stage, topic) → count`.
    pub fn counts(&self) -> HashMap<CounterKey, u64> {
        self.counters
            .lock()
            .unwrap()
            .iter()
            .map(|(k, c)| (k.clone(), c.0.load(Ordering::Relaxed)))
            .collect()
    }

    /// The processing-time histogram of `stage`, if it recorded anything.
    pub fn processing(&self, stage: &str) -> Option<Arc<Hist>> {
        self.histograms.lock().unwrap().get(stage).cloned()
    }
}

impl Recorder for Probe {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let name = match key.name() {
            CONSUMED => CONSUMED,
            PRODUCED => PRODUCED,
            _ => return Counter::noop(),
        };
        let k = (name, label(key, "stage"), label(key, "topic"));
        let count = self
            .counters
            .lock()
            .unwrap()
            .entry(k)
            .or_insert_with(|| Arc::new(Count(AtomicU64::new(0))))
            .clone();
        Counter::from_arc(count)
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        if key.name() != PROCESSING {
            return Histogram::noop();
        }
        let hist = self
            .histograms
            .lock()
            .unwrap()
            .entry(label(key, "stage"))
            .or_insert_with(|| Arc::new(Hist::new()))
            .clone();
        Histogram::from_arc(hist)
    }
}

/// CPU time of one thread or process, in clock ticks, from a `stat` file.
fn stat_ticks(stat: &str) -> Option<(String, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat[open + 1..close].to_string();
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    // After the command: state is field 3 of stat(5); utime 14, stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
}

/// Clock ticks per second (`getconf CLK_TCK`, 100 on Linux).
pub fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// CPU ticks of a whole process (every thread, living or exited).
pub fn process_ticks(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| stat_ticks(&s))
        .map_or(0, |(_, t)| t)
}

/// CPU ticks of every living thread of this process: `tid → (name, ticks)`.
pub fn thread_ticks() -> HashMap<u32, (String, u64)> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for entry in dir.flatten() {
        let Ok(tid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Some(t) = std::fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|s| stat_ticks(&s))
        {
            out.insert(tid, t);
        }
    }
    out
}

/// A snapshot of where this process's (and the broker process's) CPU went.
#[derive(Clone)]
pub struct CpuSnapshot {
    process: u64,
    threads: HashMap<u32, (String, u64)>,
    broker_process: Option<u64>,
}

impl CpuSnapshot {
    pub fn take(broker_pid: Option<u32>) -> CpuSnapshot {
        CpuSnapshot {
            process: process_ticks(std::process::id()),
            threads: thread_ticks(),
            broker_process: broker_pid.map(process_ticks),
        }
    }
}

/// CPU seconds between two snapshots, split by who used them.
#[derive(Debug, Clone, Default)]
pub struct CpuSplit {
    /// This process minus the in-process broker and the bench's main thread.
    pub medic: f64,
    /// The broker: librdkafka's mock-cluster thread (`rdk:mock`) in process,
    /// or the broker's own process.
    pub broker: Option<f64>,
    /// Threads of this process by name group, in seconds (living threads only).
    pub by_thread: Vec<(String, f64)>,
}

/// Names threads are grouped under in the per-thread breakdown.
fn thread_group(name: &str) -> String {
    if name.starts_with("medic-") {
        name.to_string()
    } else if name.starts_with("rdk:mock") {
        "rdk:mock (embedded broker)".into()
    } else if name.starts_with("rdk:broker") {
        "rdk:broker* (client I/O)".into()
    } else if name.starts_with("rdk:") {
        "rdk:main/bg (client)".into()
    } else if name.starts_with("producer pollin") {
        "rdkafka producer polling threads".into()
    } else if name.starts_with("tokio") {
        "tokio workers".into()
    } else {
        "other".into()
    }
}

pub fn cpu_between(a: &CpuSnapshot, b: &CpuSnapshot, in_process_broker: bool) -> CpuSplit {
    let hz = clock_ticks();
    let main = std::process::id();
    let mut groups: HashMap<String, u64> = HashMap::new();
    let mut mock = 0u64;
    let mut harness = 0u64;
    for (tid, (name, end)) in &b.threads {
        let start = a.threads.get(tid).map_or(0, |(_, t)| *t);
        let used = end.saturating_sub(start);
        if name.starts_with("rdk:mock") {
            mock += used;
        }
        if *tid == main {
            harness += used;
        }
        let group = if *tid == main {
            "bench main thread".to_string()
        } else {
            thread_group(name)
        };
        *groups.entry(group).or_default() += used;
    }
    let total = b.process.saturating_sub(a.process);
    let broker = match (a.broker_process, b.broker_process) {
        (Some(x), Some(y)) => Some(y.saturating_sub(x) as f64 / hz),
        _ if in_process_broker => Some(mock as f64 / hz),
        _ => None,
    };
    let in_process = if in_process_broker { mock } else { 0 };
    let mut by_thread: Vec<(String, f64)> = groups
        .into_iter()
        .filter(|(_, t)| *t > 0)
        .map(|(g, t)| (g, t as f64 / hz))
        .collect();
    by_thread.sort_by(|x, y| y.1.total_cmp(&x.1));
    CpuSplit {
        medic: total.saturating_sub(in_process + harness) as f64 / hz,
        broker,
        by_thread,
    }
}

/// Resets the peak RSS (`VmHWM`) of `pid` to its current RSS.
pub fn reset_peak_rss(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

/// `(VmRSS, VmHWM)` of `pid` in MiB.
pub fn rss_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}
