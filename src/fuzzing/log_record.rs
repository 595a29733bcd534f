//! The `log_record` target: a raw log record through ingest and categorize.

use super::*;

/// The default rule pack, compiled once per process.
pub(super) static BUILT_IN_PACK: LazyLock<RulePack> = LazyLock::new(RulePack::default_pack);

/// `log_record`: one raw record value from `medic.logs.raw` (Fluent Bit,
/// Vector, Filebeat, other JSON or plain text). When the input holds a NUL
/// byte within its first 256 bytes, what comes before it is the Kafka record
/// key and what follows the value.
///
/// Properties: the shipper parser refuses exactly the values that are not
/// UTF-8; ingest turns every other value into nothing (an empty line) or one
/// signal keyed by its deployment key, which parses back to itself; the
/// signal survives the Avro round trip; the default rule pack's evidence
/// spans lie on character boundaries of the text; the categorize stage
/// takes the signal beside another of its deployment and closes failures
/// that encode.
pub fn log_record(data: &[u8]) {
    let (key, payload) = match data.iter().take(256).position(|b| *b == 0) {
        Some(nul) => (Some(&data[..nul]), &data[nul + 1..]),
        None => (None, data),
    };
    let config = IngestConfig::default();
    let parsed = shippers::parse(payload, key, &config);
    assert_eq!(
        parsed.is_err(),
        std::str::from_utf8(payload).is_err(),
        "the shipper parser refuses exactly the values that are not UTF-8"
    );

    let topics = Topics::default();
    let mut ingest = Ingest::new(topics.clone(), config);
    let input = InputRecord {
        topic: &topics.logs_raw,
        partition: 3,
        offset: 17,
        key,
        payload: Some(payload),
        timestamp: Some(1_700_000_000_000),
    };
    let actions = match ingest.process(&input, 1_700_000_000_500) {
        Ok(actions) => actions,
        Err(ProcessError::Undecodable(_)) => {
            assert!(parsed.is_err(), "ingest refused a value the parser took");
            return;
        }
        Err(e) => panic!("ingest failed on a log record: {e}"),
    };
    let Ok(parsed) = parsed else {
        panic!("ingest took a value the parser refused")
    };
    match actions.as_slice() {
        [] => assert!(
            parsed.text.trim().is_empty(),
            "a non-empty line produced nothing"
        ),
        [Action::Emit(out)] => {
            let value = out.value.as_deref().expect("a signal has a value");
            let signal: Signal = codec::decode(value).expect("ingest's own signal decodes");
            assert_eq!(out.key, signal.deployment_key);
            assert!(!signal.text.trim().is_empty());
            let key =
                DeploymentKey::parse(&signal.deployment_key).expect("a deployment key parses back");
            assert_eq!(key.to_string(), signal.deployment_key);
            assert_eq!(
                (key.service(), key.environment()),
                (signal.service.as_str(), signal.environment.as_str())
            );
            assert_eq!(
                codec::encode(&signal).expect("re-encodes"),
                value,
                "a signal re-encodes to the same bytes"
            );
            check_scan(&BUILT_IN_PACK, &signal.text);
            check_categorize(&signal);
        }
        other => panic!("one log record produced {} actions", other.len()),
    }
}

/// The categorize stage takes `signal` before and after a matching signal of
/// the same deployment, and the failures it closes encode: whatever times
/// and text a record carried, the next stage copes.
pub(super) fn check_categorize(signal: &Signal) {
    let now = 1_700_000_000_000;
    let mut reference = signal.clone();
    reference.text = "OOMKilled".into();
    reference.observed_at = now;
    let config = CategorizeConfig::default();
    let later = now + 2 * config.window_max_ms;
    let topics = Topics::default();
    // One stage per process, emptied before each use: building one copies
    // the whole rule pack.
    static STAGE: LazyLock<Mutex<Categorize>> = LazyLock::new(|| {
        Mutex::new(Categorize::new(
            Topics::default(),
            CategorizeConfig::default(),
            BUILT_IN_PACK.clone(),
        ))
    });
    let mut stage = STAGE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    for order in [[&reference, signal], [signal, &reference]] {
        stage.reset();
        let mut actions = Vec::new();
        for s in order {
            actions.extend(stage.handle(s, now).expect("categorize takes a signal"));
        }
        actions.extend(stage.end_batch(now).expect("windows encode"));
        actions.extend(stage.on_timer(later).expect("windows close"));
        for action in &actions {
            if let Action::Emit(out) = action {
                if out.topic == topics.failures {
                    let value = out.value.as_deref().expect("a failure has a value");
                    let failure: CategorizedFailure = codec::decode(value).expect("decodes");
                    assert_eq!(failure.deployment_key, signal.deployment_key);
                }
            }
        }
    }
}

/// Evidence spans of `pack` on `line` are well formed.
pub(super) fn check_scan(pack: &RulePack, line: &str) -> Vec<usize> {
    let hits = pack.scan(line);
    let mut rules = Vec::with_capacity(hits.len());
    for hit in &hits {
        let rule = pack.rules().get(hit.rule).expect("hit names a rule");
        assert_ne!(rule.kind, RuleKind::Ignore, "an ignore pattern is a hit");
        assert!(hit.start <= hit.end && hit.end <= line.len(), "{hit:?}");
        assert!(
            line.is_char_boundary(hit.start) && line.is_char_boundary(hit.end),
            "{hit:?} splits a character"
        );
        assert!(!rules.contains(&hit.rule), "rule {} hit twice", rule.id);
        rules.push(hit.rule);
    }
    rules
}
