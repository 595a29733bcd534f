//! Entry points of the fuzz targets in `fuzz/`, shared with
//! `tests/fuzz_regressions.rs`, which replays every input a fuzzer ever
//! crashed on through the same functions.
//!
//! Each target takes the raw bytes a fuzzer produces, drives one parser the
//! way medic drives it on untrusted input, and panics when a property that
//! must hold does not: besides "no panic", decoded records re-encode to the
//! same bytes, normalized events survive the Kafka round trip, accepted
//! signatures really are the sender's, accepted strategy trees end in a
//! terminal node. `fuzz/README.md` describes the input layout of each target.
//!
//! Not part of the library: compiled only with the `fuzz` feature, which
//! `fuzz/Cargo.toml` and medic's own dev-dependency on itself turn on, so
//! `cargo doc` and users of the crate do not see it.

use crate::bridge::verify::{sign_hex, Verifier, VerifyError};
use crate::ci::{self, Delivery, NormalizeError};
use crate::codec::{self, AvroRecord};
use crate::config::{CategorizeConfig, DecideConfig, IngestConfig};
use crate::domain::*;
use crate::stages::categorize::rules::{RuleKind, RulePack};
use crate::stages::categorize::Categorize;
use crate::stages::decide::policy::{Node, Policy, Strategy};
use crate::stages::decide::tree::{walk, WalkOptions};
use crate::stages::decide::{program, render, Decide};
use crate::stages::ingest::{shippers, Ingest};
use crate::stages::{Action, InputRecord, ProcessError, Processor};
use crate::topics::Topics;
use base64::Engine;
use std::path::Path;
use std::sync::{Arc, LazyLock, Mutex};

/// A target's entry point: it panics when the input breaks a property.
pub type Entry = fn(&[u8]);

/// Every target: `(name, entry point)`. The name is the fuzz target's and the
/// folder under `fuzz/regressions/`.
pub const TARGETS: &[(&str, Entry)] = &[
    ("log_record", log_record),
    ("webhook", webhook),
    ("avro_decode", avro_decode),
    ("rule_pack", rule_pack),
    ("policy", policy),
    ("verify_signature", verify_signature),
    ("approval_body", approval_body),
    ("offline_line", offline_line),
];

/// The entry point of target `name`.
pub fn target(name: &str) -> Option<Entry> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

/// Platforms in the order the first input byte selects them (`b % 6`; the
/// digits `0`..`5` pick them in this order).
pub const PLATFORMS: [CiPlatform; 6] = [
    CiPlatform::GithubActions,
    CiPlatform::GitlabCi,
    CiPlatform::Jenkins,
    CiPlatform::AzureDevops,
    CiPlatform::Circleci,
    CiPlatform::Generic,
];

/// The digit that selects `platform` as the first byte of a `webhook` or
/// `verify_signature` input.
pub fn platform_digit(platform: CiPlatform) -> u8 {
    let index = PLATFORMS.iter().position(|p| *p == platform).unwrap_or(0);
    b'0' + index as u8
}

/// Reads a fuzzer's bytes as a sequence of small fields; past the end every
/// read is empty or zero, so any input is a valid one.
struct Bytes<'a> {
    data: &'a [u8],
}

impl<'a> Bytes<'a> {
    fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    fn i64(&mut self) -> i64 {
        let mut b = [0u8; 8];
        let head = self.take(8);
        b[..head.len()].copy_from_slice(head);
        i64::from_le_bytes(b)
    }

    /// A length byte, then that many bytes.
    fn chunk(&mut self) -> &'a [u8] {
        let n = usize::from(self.byte());
        self.take(n)
    }

    /// A chunk as text (invalid UTF-8 replaced).
    fn text(&mut self) -> String {
        String::from_utf8_lossy(self.chunk()).into_owned()
    }

    fn rest(self) -> &'a [u8] {
        self.data
    }
}

/// Writes a chunk as [`Bytes::chunk`] reads it (at most 255 bytes).
fn put_chunk(out: &mut Vec<u8>, chunk: &[u8]) {
    let chunk = &chunk[..chunk.len().min(255)];
    out.push(chunk.len() as u8);
    out.extend_from_slice(chunk);
}

// ---------------------------------------------------------------------------
// approval_body

/// `approval_body`: `POST /approvals/{recovery_id}` on the bridge. Up to the
/// first newline the input is the recovery id from the path (decoded), the
/// rest the request body.
///
/// Properties: a refusal is a 400 with a reason; an accepted body names the
/// deployment of its recovery id, the approver is who decided "(via the
/// caller)" without control characters, and the approval survives the Avro
/// round trip unchanged.
pub fn approval_body(data: &[u8]) {
    let (id, body) = match data.iter().position(|b| *b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let id = String::from_utf8_lossy(id);
    let now = 1_764_400_000_000;
    match crate::bridge::approvals::approval_from_body(&id, "fuzz-bot", body, now) {
        Ok((key, approval)) => {
            assert_eq!(
                DeploymentKey::of_recovery_id(&approval.recovery_id),
                Some(key)
            );
            assert!(
                approval.approver.ends_with(" (via fuzz-bot)"),
                "{approval:?}"
            );
            assert!(
                !approval.approver.chars().any(char::is_control),
                "{approval:?}"
            );
            let bytes = codec::encode(&approval).expect("an accepted approval encodes");
            let back: Approval = codec::decode(&bytes).expect("and decodes");
            assert_eq!(back, approval);
        }
        Err((status, reason)) => {
            assert_eq!(status, axum::http::StatusCode::BAD_REQUEST, "{reason}");
            assert!(!reason.is_empty());
        }
    }
}

// ---------------------------------------------------------------------------
// offline_line

/// `offline_line`: one line of `medic categorize --input` (a JSON object with
/// at least `message`, or any other text, taken as the message). The input
/// up to its first newline is the line; input that is not UTF-8 is skipped,
/// as the command stops on it with an error.
///
/// Properties: a line is either read or refused with a reason; the verdict
/// serializes as the JSON the command prints; a verdict has a severity
/// exactly when it has a type, a confidence in [0, 1], and evidence spans on
/// character boundaries of the message.
pub fn offline_line(data: &[u8]) {
    use crate::stages::categorize::offline::{categorize, OfflineInput};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let line = text.lines().next().unwrap_or_default();
    let input = match OfflineInput::parse_line(line) {
        Ok(input) => input,
        Err(reason) => {
            assert!(!reason.is_empty());
            return;
        }
    };
    let verdict = categorize(&BUILT_IN_PACK, &input);
    serde_json::to_string(&verdict).expect("the verdict serializes");
    assert_eq!(verdict.failure_type.is_some(), verdict.severity.is_some());
    assert!(
        (0.0..=1.0).contains(&verdict.confidence),
        "{}",
        verdict.confidence
    );
    for e in &verdict.evidence {
        if e.matched.is_empty() {
            continue;
        }
        let (start, end) = (e.span_start as usize, e.span_end as usize);
        assert!(start <= end && end <= input.message.len(), "{e:?}");
        assert!(
            input.message.is_char_boundary(start) && input.message.is_char_boundary(end),
            "{e:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// log_record

/// The default rule pack, compiled once per process.
static BUILT_IN_PACK: LazyLock<RulePack> = LazyLock::new(RulePack::default_pack);

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
fn check_categorize(signal: &Signal) {
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
fn check_scan(pack: &RulePack, line: &str) -> Vec<usize> {
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

// ---------------------------------------------------------------------------
// webhook

/// `webhook`: one webhook delivery. The first byte selects the platform
/// ([`PLATFORMS`]); when a line feed follows within 256 bytes, that line is
/// `event` or `event<TAB>delivery id` (the event-name and delivery-id
/// headers), and the body comes after it; otherwise everything after the
/// first byte is the body.
///
/// Properties: normalizing never panics; an event keeps its platform,
/// delivery id and receive time; it encodes (the bridge answers 500
/// otherwise) and decodes to itself; ingest turns it into at most one
/// signal, which decodes to what [`crate::stages::ingest::ci_signal`] made
/// and which the categorize stage takes; an event medic does not use still makes a valid record for teams that
/// produce them all.
pub fn webhook(data: &[u8]) {
    let mut bytes = Bytes { data };
    let platform = PLATFORMS[usize::from(bytes.byte()) % PLATFORMS.len()];
    let rest = bytes.rest();
    let (line, body) = match rest.iter().take(256).position(|b| *b == b'\n') {
        Some(lf) => (Some(&rest[..lf]), &rest[lf + 1..]),
        None => (None, rest),
    };
    let line = line.map(String::from_utf8_lossy);
    let (event, delivery_id) = match line.as_deref() {
        Some(line) => match line.split_once('\t') {
            Some((event, id)) => (Some(event), Some(id).filter(|id| !id.is_empty())),
            None => (Some(line), None),
        },
        None => (None, None),
    };
    let event = event.filter(|e| !e.is_empty());
    let received_at = 1_700_000_000_000;
    let delivery = Delivery {
        event,
        delivery_id,
        received_at,
    };
    let normalized = ci::normalize(platform, body, &delivery);
    let event = match normalized {
        Ok(Some(event)) => event,
        Ok(None) => {
            let unused = crate::bridge::server::unused_event(platform, event, body, delivery_id, 0);
            let bytes = codec::encode(&unused).expect("an unused event encodes");
            assert_eq!(codec::decode::<CiEvent>(&bytes).expect("decodes"), unused);
            return;
        }
        Err(NormalizeError::NotJson(_)) => {
            let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
            assert!(serde_json::from_slice::<serde_json::Value>(body).is_err());
            return;
        }
        Err(_) => return,
    };
    assert_eq!(event.platform, platform);
    assert_eq!(event.received_at, received_at);
    if let Some(id) = delivery_id {
        assert_eq!(event.id, id, "the delivery id is the event id");
    }
    let bytes = codec::encode(&event).expect("a normalized event encodes");
    assert_eq!(
        codec::decode::<CiEvent>(&bytes).expect("decodes"),
        event,
        "a CI event survives the Avro round trip"
    );
    let key = DeploymentKey::new(&event.service, &event.environment);
    let key_text = key.to_string();
    assert_eq!(DeploymentKey::parse(&key_text), Some(key));

    let topics = Topics::default();
    let mut ingest = Ingest::new(topics.clone(), IngestConfig::default());
    let input = InputRecord {
        topic: &topics.ci_events,
        partition: 0,
        offset: 9,
        key: Some(key_text.as_bytes()),
        payload: Some(&bytes),
        timestamp: None,
    };
    let actions = ingest
        .process(&input, received_at)
        .expect("ingest takes a normalized event");
    let expected = crate::stages::ingest::ci_signal(&event, &topics.ci_events, 0, 9);
    match (actions.as_slice(), expected) {
        ([], None) => {}
        ([Action::Emit(out)], Some(signal)) => {
            assert_eq!(out.key, key_text);
            let value = out.value.as_deref().expect("a signal has a value");
            assert_eq!(codec::decode::<Signal>(value).expect("decodes"), signal);
            check_categorize(&signal);
        }
        (actions, expected) => panic!(
            "ingest made {} actions for an event that makes {} signal",
            actions.len(),
            usize::from(expected.is_some())
        ),
    }
}

// ---------------------------------------------------------------------------
// avro_decode

/// One record type: its name and a function that checks one encoded value.
type AvroCase = (&'static str, fn(&[u8]));

macro_rules! avro_cases {
    ($($ty:ident),+ $(,)?) => {
        /// Every record type medic reads, in [`codec::SCHEMA_SOURCES`] order.
        const AVRO_CASES: &[AvroCase] = &[$((stringify!($ty), avro_round_trip::<$ty>)),+];

        /// The JSON example of every record type, from `schemas/examples/`.
        const AVRO_EXAMPLES: &[(&str, &str)] = &[
            $((stringify!($ty), include_str!(concat!("../schemas/examples/", stringify!($ty), ".json")))),+
        ];

        fn example_encoding(name: &str, json: &str) -> Option<Vec<u8>> {
            match name {
                $(stringify!($ty) => codec::encode(&serde_json::from_str::<$ty>(json).ok()?).ok(),)+
                _ => None,
            }
        }
    };
}

codec::record_types!(avro_cases);

/// Fingerprints of every schema version medic reads, per record type.
static FINGERPRINTS: LazyLock<Vec<Vec<[u8; 8]>>> = LazyLock::new(|| {
    let fingerprint = |text: &str| -> Option<[u8; 8]> {
        text.parse::<serde_avro_fast::Schema>()
            .ok()
            .map(|s| *s.rabin_fingerprint())
    };
    AVRO_CASES
        .iter()
        .map(|(name, _)| {
            let mut versions = Vec::new();
            for (_, text) in codec::SCHEMA_SOURCES
                .iter()
                .chain(codec::RELEASED_SOURCES)
                .filter(|(n, _)| n == name)
            {
                if let Some(f) = fingerprint(text) {
                    if !versions.contains(&f) {
                        versions.push(f);
                    }
                }
            }
            versions
        })
        .collect()
});

/// Decoding must not panic; a decoded value must re-encode, and the
/// re-encoding must decode and encode to the same bytes again.
fn avro_round_trip<T: AvroRecord>(bytes: &[u8]) {
    let Ok(value) = codec::decode::<T>(bytes) else {
        return;
    };
    let first = codec::encode(&value)
        .unwrap_or_else(|e| panic!("a decoded {} does not re-encode: {e}", T::SCHEMA));
    let again: T = codec::decode(&first)
        .unwrap_or_else(|e| panic!("a re-encoded {} does not decode: {e}", T::SCHEMA));
    let second = codec::encode(&again).expect("encodes");
    assert_eq!(
        first,
        second,
        "{} is not stable over a round trip",
        T::SCHEMA
    );
}

/// `avro_decode`: the first byte selects the record type (modulo 13, in
/// [`codec::SCHEMA_SOURCES`] order); the second is 255 when the rest is a
/// whole single-object encoding (header included), otherwise it selects one
/// of the type's known writer schemas (current or released) whose header is
/// put before the rest, the Avro datum.
///
/// Properties: decoding never panics; a decoded value re-encodes, and the
/// re-encoding decodes and encodes to the same bytes again.
pub fn avro_decode(data: &[u8]) {
    let mut bytes = Bytes { data };
    let index = usize::from(bytes.byte()) % AVRO_CASES.len();
    let mode = bytes.byte();
    let rest = bytes.rest();
    let (_, check) = AVRO_CASES[index];
    if mode == 255 {
        check(rest);
        return;
    }
    let versions = &FINGERPRINTS[index];
    let Some(fingerprint) = versions.get(usize::from(mode) % versions.len().max(1)) else {
        return;
    };
    let mut record = Vec::with_capacity(10 + rest.len());
    record.extend_from_slice(&[0xC3, 0x01]);
    record.extend_from_slice(fingerprint);
    record.extend_from_slice(rest);
    check(&record);
}

// ---------------------------------------------------------------------------
// rule_pack

/// A small excerpt of the built-in pack: its first few entries of every
/// section. `rule_pack` loads inputs over it instead of over the whole pack,
/// which takes a hundred times longer to compile.
static BASE_PACK: LazyLock<String> = LazyLock::new(|| {
    let mut out = String::from("version: 1\n");
    let mut taken = 0;
    for line in crate::stages::categorize::rules::DEFAULT_PACK.lines() {
        if !line.starts_with([' ', '#']) && line.ends_with(':') {
            out.push_str(line);
            out.push('\n');
            taken = 0;
        } else if line.starts_with("  - {") && taken < 6 {
            out.push_str(line);
            out.push('\n');
            taken += 1;
        }
    }
    out
});

/// `rule_pack`: the input is one rule-pack YAML file, loaded over an excerpt
/// of the built-in pack the way `categorize.rule_packs` are loaded over the
/// whole of it (same code: replacing, disabling, adding entries, compiling).
///
/// Properties: loading never panics; in a pack that loads, every keyword of
/// the file's own rules scans as a well-formed hit of its rule (or the line
/// is ignored as noise), and so does the text itself.
pub fn rule_pack(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let packs = [
        ("base.yaml".to_string(), BASE_PACK.clone()),
        ("fuzz.yaml".to_string(), text.to_string()),
    ];
    if let Ok(pack) = RulePack::build(&packs) {
        check_pack(&pack, text);
    }
}

fn check_pack(pack: &RulePack, text: &str) {
    assert_eq!(pack.version().len(), 12);
    check_scan(pack, text);
    let own: Vec<(String, usize)> = pack
        .keywords()
        .filter(|(_, rule)| pack.rules()[*rule].file == "fuzz.yaml")
        .map(|(keyword, rule)| (keyword.to_string(), rule))
        .take(64)
        .collect();
    for (keyword, rule) in own {
        let hits = check_scan(pack, &keyword);
        if pack.rules()[rule].regex.is_some() {
            continue;
        }
        if hits.is_empty() {
            let line = keyword.to_ascii_lowercase();
            assert!(
                pack.keywords()
                    .any(|(k, r)| pack.rules()[r].kind == RuleKind::Ignore
                        && line.contains(&k.to_ascii_lowercase())),
                "keyword {keyword:?} alone fires nothing, and no ignore pattern matches it"
            );
        } else {
            assert!(
                hits.contains(&rule),
                "keyword {keyword:?} alone does not fire its rule {}",
                pack.rules()[rule].id
            );
        }
    }
}

// ---------------------------------------------------------------------------
// policy

/// The failures every accepted strategy is walked for: the schema example,
/// once per failure type with varying severity, transience and impact.
static FAILURES: LazyLock<Vec<CategorizedFailure>> = LazyLock::new(|| {
    let base: Option<CategorizedFailure> = AVRO_EXAMPLES
        .iter()
        .find(|(name, _)| *name == "CategorizedFailure")
        .and_then(|(_, json)| serde_json::from_str(json).ok());
    let Some(base) = base else {
        return Vec::new();
    };
    FailureType::ALL
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mut f = base.clone();
            f.failure_type = *t;
            f.severity = Severity::ALL[i % Severity::ALL.len()];
            f.transient = i % 2 == 0;
            f.error_rate = (i % 3 != 0).then_some(i as f64 * 2.5);
            f.affected_users = (i % 4 != 0).then_some(i as i64 * 100);
            f.confidence = (i as f64 / 10.0).min(1.0);
            f.signal_count = i as i64;
            f.components = Component::ALL.iter().copied().skip(i).take(2).collect();
            if i % 2 == 1 {
                f.environment = "staging".into();
                f.deployment_key = format!("{}/staging", f.service);
            }
            f
        })
        .collect()
});

/// `policy`: the input is one strategy (policy) YAML file, loaded over the
/// built-in policy as `decide.policy_files` loads it, validation included.
///
/// Properties: loading never panics; every strategy of an accepted file ends
/// in a terminal node within twice as many decisions as it has nodes, for
/// every test failure, with and without medic's gates; the program
/// precomputed per combination of field conditions is the one built per
/// plan; every program, and every plan's steps, is closed (each edge names
/// a step of it); pictures draw; the decide stage plans every failure into
/// a plan that encodes.
pub fn policy(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(policy) = Policy::load(&[("fuzz.yaml".to_string(), text.to_string())]) else {
        return;
    };
    let own: Vec<&Strategy> = policy
        .strategies()
        .iter()
        .filter(|s| s.file == "fuzz.yaml")
        .collect();
    for strategy in &own {
        check_strategy(strategy);
    }
    if own.is_empty() {
        return;
    }
    let _ = render::docs(&policy);
    let decide = Decide::new(
        Topics::default(),
        DecideConfig::default(),
        Arc::new(policy.clone()),
    );
    for failure in FAILURES.iter() {
        let plan = decide.plan(failure, 1_700_000_000_000);
        check_program(&plan.steps, &plan.strategy);
        codec::encode(&plan).expect("a plan encodes");
    }
}

/// A program is closed: steps are numbered in order, each names its node
/// once, and every edge (and parallel branch) names a step of the program,
/// so the orchestrator never follows an edge into nothing.
fn check_program(steps: &[PlanStep], strategy: &str) {
    let nodes: Vec<&str> = steps
        .iter()
        .map(|s| {
            s.param("node")
                .unwrap_or_else(|| panic!("a step of {strategy} names no node: {s:?}"))
        })
        .collect();
    for (i, step) in steps.iter().enumerate() {
        assert_eq!(step.index, i as i32, "step numbers of {strategy}");
        assert!(
            !nodes[..i].contains(&nodes[i]),
            "{strategy}: node {} is two steps",
            nodes[i]
        );
        let branches = step
            .param("branches")
            .into_iter()
            .flat_map(|b| b.split(','));
        let edges = program::EDGES.iter().filter_map(|e| step.param(e));
        for to in edges.chain(branches) {
            assert!(
                nodes.contains(&to),
                "{strategy}: step {} leads to {to}, which is not a step",
                nodes[i]
            );
        }
    }
    let _ = program::expected_path(steps);
}

fn check_strategy(strategy: &Strategy) {
    let _ = render::render(strategy, render::Format::Mermaid);
    let _ = render::render(strategy, render::Format::Dot);
    let conditions = program::field_conditions(strategy);
    for failure in FAILURES.iter() {
        for gate_risky in [false, true] {
            let options = WalkOptions {
                gate_risky,
                gate_reason: "fuzz",
                gate_timeout_secs: 60,
            };
            let w = walk(strategy, failure, options);
            let last = w.decisions.last().expect("a walk decides something");
            assert!(
                matches!(strategy.nodes.get(&*last.node), Some(Node::Terminal { .. })),
                "the walk of {} stopped at {} ({})",
                strategy.id,
                last.node,
                w.message
            );
            assert!(w.decisions.len() <= 2 * strategy.nodes.len());

            let per_plan = program::program(strategy, failure, options);
            check_program(&per_plan, &strategy.id);
            if conditions.len() <= 64 {
                let bits = program::condition_bits(strategy, &conditions, failure);
                let holds = |id: &str| {
                    conditions
                        .iter()
                        .position(|c| *c == id)
                        .is_some_and(|i| bits & (1 << i) != 0)
                };
                let mut precomputed = program::program_with(strategy, &holds, options);
                for step in &mut precomputed {
                    step.target.clone_from(&failure.deployment_key);
                }
                assert_eq!(
                    per_plan, precomputed,
                    "the precomputed program of {} differs from the per-plan one",
                    strategy.id
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------
// verify_signature

/// Header names the fuzzer can pick with one byte.
const HEADER_NAMES: &[&str] = &[
    "X-Hub-Signature-256",
    "circleci-signature",
    "X-Gitlab-Token",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "Authorization",
    "X-Medic-Token",
    "X-Medic-Timestamp",
    "X-Medic-Signature",
];

/// One request to verify, as read from the fuzzer's bytes.
#[derive(Debug, Clone)]
struct Request {
    verifier: Verifier,
    headers: Vec<(String, String)>,
    query: Option<String>,
    body: Vec<u8>,
    now: Millis,
}

impl Request {
    fn verify(&self) -> Result<(), VerifyError> {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.verifier
            .verify(&headers[..], self.query.as_deref(), &self.body, self.now)
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The request as an HTTP server sees it, when every header is one HTTP allows.
    fn header_map(&self) -> Option<axum::http::HeaderMap> {
        let mut map = axum::http::HeaderMap::new();
        for (name, value) in &self.headers {
            let name = axum::http::HeaderName::from_bytes(name.as_bytes()).ok()?;
            let value = axum::http::HeaderValue::from_str(value)
                .ok()
                .filter(|v| v.to_str().is_ok())?;
            map.append(name, value);
        }
        Some(map)
    }
}

/// Seconds of `now`, as the verifier reads its clock.
fn now_secs(now: Millis) -> i64 {
    now / 1000
}

/// Whether `ts` (a timestamp header) is within the tolerance of `now`.
fn fresh(ts: &str, now: Millis, tolerance: u64) -> bool {
    ts.trim().parse::<i64>().is_ok_and(|secs| {
        (i128::from(now_secs(now)) - i128::from(secs)).unsigned_abs() <= u128::from(tolerance)
    })
}

/// An independent, plain (not constant-time) statement of when a request is
/// the sender's: used to check that whatever the verifier accepts is.
fn genuine(r: &Request) -> bool {
    let secrets = &r.verifier.secrets;
    let hmac_in = |header: &str, secret: &[u8], parts: &[&[u8]]| {
        let expected = sign_hex(secret, parts);
        !expected.is_empty() && header.to_ascii_lowercase().contains(&expected)
    };
    match r.verifier.platform {
        CiPlatform::GithubActions => r
            .header("x-hub-signature-256")
            .is_some_and(|h| secrets.iter().any(|s| hmac_in(h, s, &[&r.body]))),
        CiPlatform::Circleci => r
            .header("circleci-signature")
            .is_some_and(|h| secrets.iter().any(|s| hmac_in(h, s, &[&r.body]))),
        CiPlatform::GitlabCi => match r.header("webhook-signature") {
            Some(signature) => {
                let (Some(id), Some(ts)) = (r.header("webhook-id"), r.header("webhook-timestamp"))
                else {
                    return false;
                };
                let b64 = base64::engine::general_purpose::STANDARD;
                fresh(ts, r.now, r.verifier.tolerance_secs)
                    && secrets.iter().any(|secret| {
                        let text = String::from_utf8_lossy(secret);
                        let Ok(key) = b64.decode(text.trim().trim_start_matches("whsec_")) else {
                            return false;
                        };
                        let hex =
                            sign_hex(&key, &[id.as_bytes(), b".", ts.as_bytes(), b".", &r.body]);
                        let Some(raw) = decode_hex(&hex) else {
                            return false;
                        };
                        signature.contains(&b64.encode(raw))
                    })
            }
            None => r
                .header("x-gitlab-token")
                .is_some_and(|token| secrets.iter().any(|s| s == token.as_bytes())),
        },
        CiPlatform::AzureDevops => r.header("authorization").is_some_and(|h| {
            let b64 = base64::engine::general_purpose::STANDARD;
            secrets.iter().any(|s| h.contains(&b64.encode(s)))
        }),
        CiPlatform::Jenkins => match r.header(&r.verifier.token_header) {
            Some(token) => secrets.iter().any(|s| s == token.as_bytes()),
            None => r.query.as_deref().is_some_and(|q| q.contains("token=")),
        },
        CiPlatform::Generic => {
            let (Some(ts), Some(sig)) =
                (r.header("x-medic-timestamp"), r.header("x-medic-signature"))
            else {
                return false;
            };
            fresh(ts, r.now, r.verifier.tolerance_secs)
                && secrets
                    .iter()
                    .any(|s| hmac_in(sig, s, &[ts.trim().as_bytes(), b".", &r.body]))
        }
    }
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Whether `value` can travel as an HTTP header value unchanged.
fn header_safe(value: &str) -> bool {
    value.trim() == value
        && axum::http::HeaderValue::from_str(value).is_ok_and(|v| v.to_str().is_ok())
}

/// Replaces the request's credentials by the ones a sender holding secret
/// `secret_index` would attach; `None` when that secret cannot be sent as a
/// header (a token with line breaks, say).
fn sign(r: &mut Request, secret_index: usize, flavour: u8, skew: i64) -> Option<()> {
    let index = secret_index % r.verifier.secrets.len().max(1);
    let secret = r.verifier.secrets.get(index)?.clone();
    let text = String::from_utf8(secret.clone()).ok()?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let tolerance = i64::try_from(r.verifier.tolerance_secs).unwrap_or(i64::MAX);
    let ts = now_secs(r.now)
        .checked_add(skew.checked_rem(tolerance.checked_add(1)?)?)?
        .to_string();
    let mut headers = Vec::new();
    match r.verifier.platform {
        CiPlatform::GithubActions => headers.push((
            "X-Hub-Signature-256".to_string(),
            format!("sha256={}", sign_hex(&secret, &[&r.body])),
        )),
        CiPlatform::Circleci => headers.push((
            "circleci-signature".to_string(),
            format!("v1={}", sign_hex(&secret, &[&r.body])),
        )),
        CiPlatform::GitlabCi if flavour.is_multiple_of(2) => {
            if !header_safe(&text) {
                return None;
            }
            headers.push(("X-Gitlab-Token".to_string(), text));
        }
        CiPlatform::GitlabCi => {
            // A signing token: the secret is `whsec_` and the key in base64.
            let key = secret;
            r.verifier.secrets[index] = format!("whsec_{}", b64.encode(&key)).into_bytes();
            let id = format!("msg_{flavour}");
            let raw = decode_hex(&sign_hex(
                &key,
                &[id.as_bytes(), b".", ts.as_bytes(), b".", &r.body],
            ))?;
            headers.push(("webhook-id".to_string(), id));
            headers.push(("webhook-timestamp".to_string(), ts));
            headers.push((
                "webhook-signature".to_string(),
                format!("v1,{}", b64.encode(raw)),
            ));
        }
        CiPlatform::AzureDevops => headers.push((
            "Authorization".to_string(),
            format!("Basic {}", b64.encode(&secret)),
        )),
        CiPlatform::Jenkins if flavour.is_multiple_of(2) => {
            if !header_safe(&text) {
                return None;
            }
            let name = r.verifier.token_header.clone();
            headers.push((name, text));
        }
        CiPlatform::Jenkins => {
            let encoded: String = text
                .bytes()
                .map(|b| match b {
                    b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect();
            r.query = Some(format!("a=1&token={encoded}&b=2"));
        }
        CiPlatform::Generic => {
            headers.push((
                "X-Medic-Signature".to_string(),
                format!(
                    "sha256={}",
                    sign_hex(&secret, &[ts.as_bytes(), b".", &r.body])
                ),
            ));
            headers.push(("X-Medic-Timestamp".to_string(), ts));
        }
    }
    r.headers = headers;
    Some(())
}

/// `verify_signature`: one request to one platform's endpoint, laid out as
/// `platform` (byte, [`PLATFORMS`]), `flags` (byte: bits 0–1 the number of
/// secrets, bit 2 "sign it as the sender would", bit 3 "has a query
/// string", bits 4–7 which secret signs and how), tolerance in seconds
/// (u16 LE), now in milliseconds (i64 LE), clock skew of the signer in
/// seconds (i64 LE), the secrets, the Jenkins token header name (empty for
/// `X-Medic-Token`), a header count byte and the headers (a name byte that
/// picks a known header, or 255 for a name chunk, then a value chunk), the
/// query chunk when flagged, and the body (the rest). A chunk is a length
/// byte and that many bytes.
///
/// Properties: verifying never panics; it gives the same verdict on the
/// headers as an HTTP server parses them; whatever it accepts is signed with
/// (or carries) a configured secret, and, for timestamped schemes, is fresh;
/// a request signed as the platform signs is accepted, and is refused under
/// another secret or, for signed bodies, with one byte more of body.
pub fn verify_signature(data: &[u8]) {
    let (request, sign) = read_request(data);
    match sign {
        Some(signed) => {
            if let Some(signed) = signed {
                check_signed(&signed);
            }
        }
        None => check_verdict(&request),
    }
}

/// The request an input describes, and, when the input asks for it, the
/// request signed as the sender would sign it (`Some(None)` when the chosen
/// secret cannot be sent that way).
fn read_request(data: &[u8]) -> (Request, Option<Option<Request>>) {
    let mut bytes = Bytes { data };
    let platform = PLATFORMS[usize::from(bytes.byte()) % PLATFORMS.len()];
    let flags = bytes.byte();
    let tolerance_secs = u64::from(bytes.u16());
    let now = bytes.i64();
    let skew = bytes.i64();
    // Configuration refuses empty secrets, so the verifier never gets one.
    let secrets: Vec<Vec<u8>> = (0..flags & 3)
        .map(|_| bytes.text().into_bytes())
        .filter(|s| !s.is_empty())
        .collect();
    let token_header = Some(bytes.text())
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "X-Medic-Token".to_string());
    let count = bytes.byte() % 9;
    let mut headers = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let pick = usize::from(bytes.byte());
        let name = match HEADER_NAMES.get(pick) {
            Some(name) => (*name).to_string(),
            None => bytes.text(),
        };
        headers.push((name, bytes.text()));
    }
    let query = (flags & 8 != 0).then(|| bytes.text());
    let body = bytes.rest().to_vec();
    let request = Request {
        verifier: Verifier {
            platform,
            secrets,
            tolerance_secs,
            token_header,
        },
        headers,
        query,
        body,
        now,
    };
    let signed = (flags & 4 != 0 && !request.verifier.secrets.is_empty()).then(|| {
        let mut signed = request.clone();
        sign(&mut signed, usize::from(flags >> 4), flags >> 6, skew).map(|()| signed)
    });
    (request, signed)
}

/// Whatever the verifier says of an arbitrary request, it says the same of
/// the request as an HTTP server parses it, and it accepts only genuine ones.
fn check_verdict(request: &Request) {
    let verdict = request.verify();
    // An HTTP server refuses header values that are not visible ASCII, and
    // the verifier sees those as missing there: compare only where it can't.
    if let Some(map) = request.header_map() {
        let over_http =
            request
                .verifier
                .verify(&map, request.query.as_deref(), &request.body, request.now);
        assert_eq!(verdict, over_http, "headers as HTTP parses them");
    }
    if verdict.is_ok() {
        assert!(
            genuine(request),
            "accepted a request no configured secret signed: {request:?}"
        );
    }
}

/// A correctly signed request verifies, and stops verifying when the secret
/// or the signed body changes.
fn check_signed(request: &Request) {
    assert_eq!(request.verify(), Ok(()), "a signed request: {request:?}");
    if let Some(map) = request.header_map() {
        assert_eq!(
            request
                .verifier
                .verify(&map, request.query.as_deref(), &request.body, request.now),
            Ok(()),
            "a signed request over HTTP: {request:?}"
        );
    }
    // Secrets derived from the real ones, none of them equal to any real
    // one (appending a byte is not enough: rotation may list `a` and `a!`).
    let mut other = request.clone();
    other.verifier.secrets = request
        .verifier
        .secrets
        .iter()
        .map(|s| sign_hex(b"another secret", &[s]).into_bytes())
        .collect();
    assert_eq!(
        other.verify(),
        Err(VerifyError::Mismatch),
        "verified under other secrets: {request:?}"
    );
    if matches!(
        request.verifier.platform,
        CiPlatform::GithubActions | CiPlatform::Circleci | CiPlatform::Generic
    ) || request.header("webhook-signature").is_some()
    {
        let mut tampered = request.clone();
        tampered.body.push(b' ');
        assert_eq!(
            tampered.verify(),
            Err(VerifyError::Mismatch),
            "verified a changed body: {request:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// seeds

/// Seeds no fixture file provides as such: every record type's example
/// encoded (whole and as a bare datum for each known writer schema), and
/// the published signature vectors as `verify_signature` inputs. Empty for
/// targets whose seeds are plain files (`fuzz/run.sh` copies those).
pub fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    match target {
        "avro_decode" => avro_seeds(),
        "verify_signature" => verify_seeds(),
        _ => Vec::new(),
    }
}

fn avro_seeds() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (index, (name, json)) in AVRO_EXAMPLES.iter().enumerate() {
        let Some(encoded) = example_encoding(name, json) else {
            continue;
        };
        let mut whole = vec![index as u8, 255];
        whole.extend_from_slice(&encoded);
        out.push((format!("{name}.whole"), whole));
        let mut datum = vec![index as u8, 0];
        datum.extend_from_slice(encoded.get(10..).unwrap_or_default());
        out.push((format!("{name}.datum"), datum));
    }
    out
}

/// A `verify_signature` input.
struct VerifySeed<'a> {
    platform: CiPlatform,
    sign: bool,
    query: Option<&'a str>,
    now: Millis,
    secrets: &'a [&'a str],
    headers: &'a [(&'a str, &'a str)],
    body: &'a [u8],
}

impl VerifySeed<'_> {
    fn encode(&self) -> Vec<u8> {
        let platform = PLATFORMS
            .iter()
            .position(|p| *p == self.platform)
            .unwrap_or(0) as u8;
        let flags = (self.secrets.len().min(3) as u8)
            | if self.sign { 4 } else { 0 }
            | if self.query.is_some() { 8 } else { 0 };
        let mut out = vec![platform, flags];
        out.extend_from_slice(&300u16.to_le_bytes());
        out.extend_from_slice(&self.now.to_le_bytes());
        out.extend_from_slice(&7i64.to_le_bytes());
        for secret in self.secrets.iter().take(3) {
            put_chunk(&mut out, secret.as_bytes());
        }
        put_chunk(&mut out, b"");
        out.push(self.headers.len().min(8) as u8);
        for (name, value) in self.headers.iter().take(8) {
            match HEADER_NAMES
                .iter()
                .position(|n| n.eq_ignore_ascii_case(name))
            {
                Some(i) => out.push(i as u8),
                None => {
                    out.push(255);
                    put_chunk(&mut out, name.as_bytes());
                }
            }
            put_chunk(&mut out, value.as_bytes());
        }
        if let Some(query) = self.query {
            put_chunk(&mut out, query.as_bytes());
        }
        out.extend_from_slice(self.body);
        out
    }
}

fn verify_seeds() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let vectors: Vec<serde_json::Value> =
        serde_json::from_str(include_str!("../tests/data/webhooks/vectors.json"))
            .unwrap_or_default();
    for (i, v) in vectors.iter().enumerate() {
        let field = |k: &str| v.get(k).and_then(serde_json::Value::as_str).unwrap_or("");
        let body = field("body").as_bytes();
        let secret;
        let (platform, secrets, headers, now): (_, [&str; 1], Vec<(&str, &str)>, Millis) =
            match field("scheme") {
                "github" => (
                    CiPlatform::GithubActions,
                    [field("secret")],
                    vec![(field("header"), field("signature"))],
                    0,
                ),
                "circleci" => (
                    CiPlatform::Circleci,
                    [field("secret")],
                    vec![(field("header"), field("signature"))],
                    0,
                ),
                "standard-webhooks" => {
                    secret = format!("whsec_{}", field("secret_base64"));
                    let ts = field("webhook_timestamp");
                    (
                        CiPlatform::GitlabCi,
                        [secret.as_str()],
                        vec![
                            ("webhook-id", field("webhook_id")),
                            ("webhook-timestamp", ts),
                            (field("header"), field("signature")),
                        ],
                        ts.parse::<i64>().unwrap_or(0).saturating_mul(1000),
                    )
                }
                _ => continue,
            };
        let seed = VerifySeed {
            platform,
            sign: false,
            query: None,
            now,
            secrets: &secrets,
            headers: &headers,
            body,
        };
        out.push((format!("vector-{i}"), seed.encode()));
    }
    let body = br#"{"id":"1","service":"checkout","status":"failure"}"#;
    let unsigned = [
        (
            CiPlatform::GitlabCi,
            vec![("X-Gitlab-Token", "s3cret")],
            None,
        ),
        (
            CiPlatform::AzureDevops,
            vec![("Authorization", "Basic bWVkaWM6czNjcmV0")],
            None,
        ),
        (
            CiPlatform::Jenkins,
            vec![("X-Medic-Token", "s3cret")],
            Some("job=x&token=s3cret"),
        ),
        (
            CiPlatform::Generic,
            vec![
                ("X-Medic-Timestamp", "1700000000"),
                ("X-Medic-Signature", "sha256=00"),
            ],
            None,
        ),
    ];
    for (platform, headers, query) in &unsigned {
        let seed = VerifySeed {
            platform: *platform,
            sign: false,
            query: *query,
            now: 1_700_000_000_000,
            secrets: &["s3cret", "medic:s3cret"],
            headers,
            body,
        };
        out.push((format!("plain-{}", platform.as_str()), seed.encode()));
    }
    for platform in PLATFORMS {
        let seed = VerifySeed {
            platform,
            sign: true,
            query: None,
            now: 1_700_000_000_000,
            secrets: &["It's a Secret to Everybody"],
            headers: &[],
            body,
        };
        out.push((format!("signed-{}", platform.as_str()), seed.encode()));
    }
    out
}

/// Writes [`seeds`] of `target` into `dir` (created if missing); the number written.
pub fn write_seeds(target: &str, dir: &Path) -> std::io::Result<usize> {
    let seeds = seeds(target);
    if seeds.is_empty() {
        return Ok(0);
    }
    std::fs::create_dir_all(dir)?;
    for (name, bytes) in &seeds {
        std::fs::write(dir.join(format!("seed-{name}")), bytes)?;
    }
    Ok(seeds.len())
}

/// Writes the seeds of `target` into the folder named by the environment
/// variable `MEDIC_FUZZ_SEED_DIR`, when it is set (the fuzz targets call this
/// once at start-up; `fuzz/run.sh` sets it to the target's corpus).
pub fn seed_from_env(target: &str) {
    if let Some(dir) = std::env::var_os("MEDIC_FUZZ_SEED_DIR") {
        if let Err(e) = write_seeds(target, Path::new(&dir)) {
            eprintln!("cannot write the seeds of {target}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_empty_inputs_are_valid_for_every_target() {
        for (_, f) in TARGETS {
            f(b"");
            f(b"\0");
            f(b"5\n{}");
        }
    }

    #[test]
    fn the_rule_pack_base_is_a_valid_excerpt_of_the_built_in_pack() {
        let base = RulePack::parse(&BASE_PACK, "base.yaml").expect("the base pack builds");
        let kinds: Vec<RuleKind> = base.rules().iter().map(|r| r.kind).collect();
        assert!(kinds.len() >= 12, "{kinds:?}");
        for kind in [RuleKind::Critical, RuleKind::AutoRecovery, RuleKind::Ignore] {
            assert!(kinds.contains(&kind), "no {kind:?} entry in the base");
        }
    }

    #[test]
    fn every_target_has_seeds_that_pass() {
        let avro = seeds("avro_decode");
        assert_eq!(avro.len(), 2 * AVRO_CASES.len(), "every example encodes");
        let verify = seeds("verify_signature");
        assert!(verify.len() >= 10);
        for (_, seed) in &avro {
            avro_decode(seed);
        }
        for (name, seed) in &verify {
            verify_signature(seed);
            let (request, signed) = read_request(seed);
            match signed {
                Some(signed) => assert!(signed.is_some(), "{name} can be signed"),
                None if name.starts_with("vector-") => {
                    assert_eq!(
                        request.verify(),
                        Ok(()),
                        "{name}: the published vector verifies"
                    )
                }
                None => {}
            }
        }
    }
}
