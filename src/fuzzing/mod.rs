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
use crate::domain::*;
use crate::stages::categorize::config::CategorizeConfig;
use crate::stages::categorize::rules::{RuleKind, RulePack};
use crate::stages::categorize::Categorize;
use crate::stages::decide::config::DecideConfig;
use crate::stages::decide::policy::{Node, Policy, Strategy};
use crate::stages::decide::tree::{walk, WalkOptions};
use crate::stages::decide::{program, render, Decide};
use crate::stages::ingest::config::IngestConfig;
use crate::stages::ingest::{shippers, Ingest};
use crate::stages::{Action, InputRecord, ProcessError, Processor};
use crate::topics::Topics;
use base64::Engine;
use std::path::Path;
use std::sync::{Arc, LazyLock, Mutex};

mod approval;
mod avro;
mod log_record;
mod offline;
mod policy;
mod rule_pack;
mod signature;
mod webhook;

pub use approval::approval_body;
pub use avro::avro_decode;
use avro::{example_encoding, AVRO_EXAMPLES};
pub use log_record::log_record;
use log_record::{check_categorize, check_scan, BUILT_IN_PACK};
pub use offline::offline_line;
pub use policy::policy;
pub use rule_pack::rule_pack;
pub use signature::verify_signature;
use signature::HEADER_NAMES;
pub use webhook::webhook;

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
        serde_json::from_str(include_str!("../../tests/data/webhooks/vectors.json"))
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
    use super::avro::AVRO_CASES;
    use super::rule_pack::BASE_PACK;
    use super::signature::read_request;
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
