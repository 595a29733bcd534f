//! The broker under test: the embedded cluster, a Tansu the bench starts and
//! stops itself (memory or SQLite storage, in a temporary directory), or an
//! external broker.

use crate::tansu::{self, Tansu};
use medic::kafka::embedded::EmbeddedCluster;
use medic::kafka::{admin, ClientSettings};
use medic::topics::Topics;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;

/// Which broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Embedded,
    TansuMemory,
    TansuSqlite,
    External,
}

impl Kind {
    pub fn parse(s: &str) -> Result<Kind, String> {
        match s {
            "embedded" => Ok(Kind::Embedded),
            "tansu-memory" => Ok(Kind::TansuMemory),
            "tansu-sqlite" => Ok(Kind::TansuSqlite),
            other => Err(format!(
                "--broker {other}: expected embedded, tansu-memory or tansu-sqlite"
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Embedded => "embedded (librdkafka mock cluster)",
            Kind::TansuMemory => "Tansu 0.6, memory storage",
            Kind::TansuSqlite => "Tansu 0.6, SQLite storage",
            Kind::External => "external broker",
        }
    }
}

/// A running broker.
pub struct Broker {
    pub kind: Kind,
    pub bootstrap: String,
    embedded: Option<EmbeddedCluster>,
    /// Killed, and its directory removed, when the broker is dropped.
    _tansu: Option<Tansu>,
    /// Process id of an out-of-process broker, for its CPU time and memory.
    pub pid: Option<u32>,
}

impl Broker {
    /// Starts (or names) the broker.
    pub fn start(kind: Kind, external: Option<(&str, Option<u32>)>) -> Result<Broker, String> {
        match kind {
            Kind::External => {
                let (brokers, pid) = external.ok_or("an external broker needs --brokers")?;
                Ok(Broker {
                    kind,
                    bootstrap: brokers.to_string(),
                    embedded: None,
                    _tansu: None,
                    pid,
                })
            }
            Kind::Embedded => {
                // Topics are created per phase; start with none of medic's.
                let cluster = EmbeddedCluster::start(1, &Topics::new("unused"))
                    .map_err(|e| format!("embedded cluster: {e}"))?;
                Ok(Broker {
                    kind,
                    bootstrap: cluster.bootstrap_servers(),
                    embedded: Some(cluster),
                    _tansu: None,
                    pid: None,
                })
            }
            Kind::TansuMemory | Kind::TansuSqlite => {
                let binary = tansu::binary()
                    .ok_or("tansu not found on PATH or in ~/.cargo/bin (cargo install tansu)")?;
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.subsec_nanos())
                    .unwrap_or(0);
                let dir = std::env::temp_dir()
                    .join(format!("medic-e2e-{}-{nanos:08x}", std::process::id()));
                let storage = if kind == Kind::TansuMemory {
                    "memory://tansu/"
                } else {
                    "sqlite://tansu.db"
                };
                let tansu = Tansu::start(binary, dir, storage)?;
                let broker = Broker {
                    kind,
                    bootstrap: tansu.address(),
                    embedded: None,
                    pid: tansu.pid(),
                    _tansu: Some(tansu),
                };
                Ok(broker)
            }
        }
    }

    pub fn in_process(&self) -> bool {
        self.embedded.is_some()
    }

    /// Creates every medic topic under `topics` as `topics/` declares it,
    /// except those carrying a record per raw line (the raw log topic, and
    /// signals with their co-partitioned window changelog), which get
    /// `wide` partitions.
    pub fn create_medic_topics(
        &self,
        settings: &ClientSettings,
        topics: &Topics,
        wide: i32,
        rt: &tokio::runtime::Runtime,
    ) -> Result<(), String> {
        let wide_topics = [
            topics.logs_raw.clone(),
            topics.signals.clone(),
            topics.windows.clone(),
        ];
        self.create_topics(settings, &wide_topics, wide, rt)?;
        match &self.embedded {
            Some(cluster) => {
                for (name, spec) in topics.all() {
                    if !wide_topics.contains(&name) {
                        cluster
                            .create_topic(&name, spec.partitions)
                            .map_err(|e| format!("{name}: {e}"))?;
                    }
                }
                Ok(())
            }
            // `topics apply` leaves those as they are (and reports their
            // partition counts as drift).
            None => rt.block_on(admin::apply(settings, topics)).map(|_| ()),
        }
    }

    /// Creates plain topics (the pass-through's) with `partitions` each.
    pub fn create_topics(
        &self,
        settings: &ClientSettings,
        names: &[String],
        partitions: i32,
        rt: &tokio::runtime::Runtime,
    ) -> Result<(), String> {
        match &self.embedded {
            Some(cluster) => {
                for name in names {
                    cluster
                        .create_topic(name, partitions)
                        .map_err(|e| format!("{name}: {e}"))?;
                }
                Ok(())
            }
            None => {
                let admin: AdminClient<DefaultClientContext> =
                    settings.base().create().map_err(|e| e.to_string())?;
                let new: Vec<NewTopic<'_>> = names
                    .iter()
                    .map(|n| NewTopic::new(n, partitions, TopicReplication::Fixed(1)))
                    .collect();
                let results = rt
                    .block_on(admin.create_topics(&new, &AdminOptions::new()))
                    .map_err(|e| e.to_string())?;
                for r in results {
                    r.map_err(|(t, e)| format!("creating {t}: {e}"))?;
                }
                Ok(())
            }
        }
    }
}
