//! The consumer's client context: librdkafka statistics into metrics, and
//! the rebalance callbacks (commit the open batch on a revoke, restore state
//! for the assigned partitions before any input).

use super::*;

impl StageContext {
    fn fail(&self, e: RunnerError) {
        lock(&self.error).get_or_insert(e);
    }
}

impl ClientContext for StageContext {
    /// librdkafka's statistics (every `statistics.interval.ms`): sets
    /// `medic_consumer_lag` per assigned partition — records between this
    /// instance's position (what it handed to the stage, else its committed
    /// offset, else the earliest) and the end of the partition (the last
    /// stable offset under read_committed). Partitions it no longer holds go to 0,
    /// so summing over instances gives the group's lag.
    fn stats_raw(&self, statistics: &[u8]) {
        // Only the fields needed, each optional: the full statistics hold
        // histograms for every broker and partition that are not used here.
        #[derive(serde::Deserialize)]
        struct Stats {
            #[serde(default)]
            topics: BTreeMap<String, Topic>,
        }
        #[derive(serde::Deserialize)]
        struct Topic {
            #[serde(default)]
            partitions: BTreeMap<i32, Partition>,
        }
        #[derive(serde::Deserialize)]
        struct Partition {
            #[serde(default)]
            desired: bool,
            #[serde(default = "unknown")]
            app_offset: i64,
            #[serde(default = "unknown")]
            committed_offset: i64,
            #[serde(default = "unknown")]
            lo_offset: i64,
            #[serde(default = "unknown")]
            ls_offset: i64,
            #[serde(default = "unknown")]
            hi_offset: i64,
        }
        fn unknown() -> i64 {
            -1
        }
        let statistics: Stats = match serde_json::from_slice(statistics) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "unreadable librdkafka statistics");
                return;
            }
        };
        let mut now = BTreeSet::new();
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                if *partition < 0 || !p.desired {
                    continue;
                }
                let end = if p.ls_offset >= 0 {
                    p.ls_offset
                } else {
                    p.hi_offset
                };
                // Nothing consumed or committed yet: the group starts at the
                // earliest offset, so all of the partition is lag.
                let position = [p.app_offset, p.committed_offset, p.lo_offset]
                    .into_iter()
                    .find(|o| *o >= 0)
                    .unwrap_or(-1);
                if end < 0 || position < 0 {
                    continue;
                }
                let lag = (end - position).max(0);
                crate::telemetry::consumer_lag(self.stage.as_str(), topic, *partition, lag);
                now.insert((topic.clone(), *partition));
            }
        }
        let mut lagging = lock(&self.lagging);
        for (topic, partition) in lagging.difference(&now) {
            crate::telemetry::consumer_lag(self.stage.as_str(), topic, *partition, 0);
        }
        *lagging = now;
    }
}

impl ConsumerContext for StageContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            lock(&self.status.assigned).clear();
            tracing::info!(
                partitions = tpl.count(),
                "partitions revoked; committing the open batch"
            );
            // Results of running effects belong to the state being given up.
            let mut pipeline = lock(&self.pipeline);
            let done = pipeline
                .drain(consumer)
                .and_then(|()| pipeline.commit(consumer));
            if let Err(e) = done {
                self.fail(e);
            }
            // The state of the revoked partitions belongs to their next owner:
            // until the assignment restores it, the timer must not act on it
            // (close a window, time out a recovery) from here.
            pipeline.processor.reset();
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let partitions: BTreeSet<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
            *lock(&self.status.assigned) = tpl
                .elements()
                .iter()
                .map(|e| (e.topic().to_string(), e.partition()))
                .collect();
            let mut pipeline = lock(&self.pipeline);
            let stage = pipeline.stage;
            match restore::restore(
                &self.settings,
                pipeline.processor.as_mut(),
                &partitions,
                RESTORE_TIMEOUT,
            ) {
                Ok(n) => {
                    pipeline.stats.restored += n;
                    tracing::info!(%stage, ?partitions, restored = n, "partitions assigned; state restored");
                }
                Err(e) => self.fail(RunnerError::Restart(format!(
                    "{stage}: restoring state failed: {e}"
                ))),
            }
        }
    }
}
