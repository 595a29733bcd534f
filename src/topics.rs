//! Topic definitions: `topics/*.yaml`, compiled in.
//!
//! Each file names one topic (without the configurable prefix), its value
//! schema, its partitions, replication factor and broker config. Topics in one
//! *co-partition group* must have the same partition count: a stage that joins
//! them (or restores its changelog) relies on key `k` living in partition `p`
//! of each of them.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::LazyLock;

/// One topic as declared in `topics/`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicSpec {
    /// Name without prefix, e.g. `signals`; the topic is `<prefix>.<name>`.
    #[serde(skip)]
    pub name: String,
    /// What the topic is for.
    pub description: String,
    /// Schema name of the value, or `raw` for shipper input.
    pub value: String,
    /// What the key is.
    pub key: String,
    /// Who writes it.
    pub producers: Vec<String>,
    /// Who reads it.
    pub consumers: Vec<String>,
    /// Co-partition group, or `none`.
    pub copartition: String,
    /// Partition count.
    pub partitions: i32,
    /// Replication factor wanted; capped to the broker count when applied.
    pub replication_factor: i32,
    /// Broker-side topic config (`cleanup.policy`, `retention.ms`, ...).
    pub config: BTreeMap<String, String>,
}

impl TopicSpec {
    /// True for changelog topics (`cleanup.policy=compact`).
    pub fn is_compacted(&self) -> bool {
        self.config
            .get("cleanup.policy")
            .is_some_and(|p| p.split(',').any(|s| s.trim() == "compact"))
    }
}

macro_rules! topic_files {
    ($($file:literal),+ $(,)?) => {
        /// `(file name, YAML text)` of every topic definition.
        pub const TOPIC_SOURCES: &[(&str, &str)] = &[
            $(($file, include_str!(concat!("../topics/", $file)))),+
        ];
    };
}

topic_files!(
    "medic.logs.raw.yaml",
    "medic.ci.events.yaml",
    "medic.signals.yaml",
    "medic.categorize.windows.yaml",
    "medic.failures.yaml",
    "medic.decide.stats.yaml",
    "medic.recovery.plans.yaml",
    "medic.recovery.approvals.yaml",
    "medic.recovery.state.yaml",
    "medic.recovery.outcomes.yaml",
    "medic.shadow.outcomes.yaml",
    "medic.audit.yaml",
    "medic.notifications.yaml",
    "medic.deadletter.yaml",
);

static SPECS: LazyLock<Vec<TopicSpec>> = LazyLock::new(|| {
    TOPIC_SOURCES
        .iter()
        .map(|(file, text)| {
            // Compiled-in data, parsed by `tests/topics.rs` on every build.
            let mut spec: TopicSpec = serde_yaml_ng::from_str(text)
                .unwrap_or_else(|e| panic!("topics/{file} is invalid: {e}"));
            spec.name = file
                .trim_start_matches("medic.")
                .trim_end_matches(".yaml")
                .to_string();
            spec
        })
        .collect()
});

/// Every topic medic uses.
pub fn specs() -> &'static [TopicSpec] {
    &SPECS
}

/// Full topic names for one prefix. Every stage takes its topic names from here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    /// The prefix, `medic` by default.
    pub prefix: String,
    /// Raw log records from shippers.
    pub logs_raw: String,
    /// Normalized CI events from the bridge.
    pub ci_events: String,
    /// Normalized signals.
    pub signals: String,
    /// categorize's window changelog.
    pub windows: String,
    /// Categorized failures.
    pub failures: String,
    /// decide's strategy statistics changelog.
    pub decide_stats: String,
    /// Recovery plans.
    pub plans: String,
    /// Approvals of gated recoveries.
    pub approvals: String,
    /// Recovery state snapshots (orchestrate's changelog).
    pub state: String,
    /// Recovery outcomes.
    pub outcomes: String,
    /// Outcomes under a candidate policy (`medic run shadow`).
    pub shadow_outcomes: String,
    /// Audit trail.
    pub audit: String,
    /// Notification delivery records.
    pub notifications: String,
    /// Dead letters.
    pub deadletter: String,
}

impl Topics {
    /// Topic names under `prefix` (`medic` gives `medic.logs.raw`, ...).
    pub fn new(prefix: &str) -> Self {
        let t = |name: &str| format!("{prefix}.{name}");
        Topics {
            prefix: prefix.to_string(),
            logs_raw: t("logs.raw"),
            ci_events: t("ci.events"),
            signals: t("signals"),
            windows: t("categorize.windows"),
            failures: t("failures"),
            decide_stats: t("decide.stats"),
            plans: t("recovery.plans"),
            approvals: t("recovery.approvals"),
            state: t("recovery.state"),
            outcomes: t("recovery.outcomes"),
            shadow_outcomes: t("shadow.outcomes"),
            audit: t("audit"),
            notifications: t("notifications"),
            deadletter: t("deadletter"),
        }
    }

    /// Full name of a spec under this prefix.
    pub fn full_name(&self, spec: &TopicSpec) -> String {
        format!("{}.{}", self.prefix, spec.name)
    }

    /// Every topic with its spec, in declaration order.
    pub fn all(&self) -> Vec<(String, &'static TopicSpec)> {
        specs().iter().map(|s| (self.full_name(s), s)).collect()
    }
}

impl Default for Topics {
    fn default() -> Self {
        Topics::new("medic")
    }
}

/// Co-partition groups whose members disagree on partition count:
/// `(group, [(topic, partitions)])`. Empty when the layout is sound.
pub fn copartition_conflicts<'a>(
    layout: impl IntoIterator<Item = (&'a TopicSpec, i32)>,
) -> Vec<(String, Vec<(String, i32)>)> {
    let mut groups: BTreeMap<&str, Vec<(String, i32)>> = BTreeMap::new();
    for (spec, partitions) in layout {
        if spec.copartition != "none" {
            groups
                .entry(spec.copartition.as_str())
                .or_default()
                .push((spec.name.clone(), partitions));
        }
    }
    groups
        .into_iter()
        .filter(|(_, members)| members.windows(2).any(|w| w[0].1 != w[1].1))
        .map(|(g, members)| (g.to_string(), members))
        .collect()
}
