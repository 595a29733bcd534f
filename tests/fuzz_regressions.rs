//! The fuzzers' findings, replayed on every `cargo test`: each file under
//! `fuzz/regressions/<target>/` is an input that once made that fuzz target
//! fail, fed through the same function the target calls
//! (`medic::fuzzing::<target>`). The seed material the fuzzers start from runs
//! through them too, so the properties they check hold on real payloads.
//! No fuzzer is needed; see `fuzz/README.md`.

use medic::domain::CiPlatform;
use medic::fuzzing;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    out.sort();
    out
}

/// Runs every `(label, target, input)`; fails naming each one that panicked.
fn replay(cases: Vec<(String, &str, Vec<u8>)>) -> usize {
    let mut failed = Vec::new();
    for (label, target, input) in &cases {
        let f = fuzzing::target(target).unwrap_or_else(|| panic!("no fuzz target {target}"));
        if catch_unwind(AssertUnwindSafe(|| f(input))).is_err() {
            failed.push(format!("{target}: {label}"));
        }
    }
    assert!(
        failed.is_empty(),
        "{} input(s) fail again:\n  {}",
        failed.len(),
        failed.join("\n  ")
    );
    cases.len()
}

#[test]
fn every_regression_input_passes_its_target() {
    let root = repo().join("fuzz/regressions");
    let mut cases = Vec::new();
    for dir in files(&root) {
        if !dir.is_dir() {
            continue;
        }
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let target = fuzzing::TARGETS
            .iter()
            .map(|(t, _)| *t)
            .find(|t| *t == name)
            .unwrap_or_else(|| panic!("fuzz/regressions/{name} is not a fuzz target"));
        for file in files(&dir) {
            let input = std::fs::read(&file).expect("readable");
            cases.push((file.display().to_string(), target, input));
        }
    }
    let n = replay(cases);
    assert!(n > 0, "no regression inputs found under {}", root.display());
}

/// A webhook payload from `tests/data/webhooks/` as a `webhook` input.
fn webhook_input(platform: CiPlatform, event: &str, body: &[u8]) -> Vec<u8> {
    let mut input = vec![fuzzing::platform_digit(platform)];
    input.extend_from_slice(event.as_bytes());
    input.push(b'\n');
    input.extend_from_slice(body);
    input
}

#[test]
fn the_seed_material_passes_every_target() {
    let mut cases = Vec::new();
    for target in ["avro_decode", "verify_signature"] {
        for (name, input) in fuzzing::seeds(target) {
            cases.push((name, target, input));
        }
    }

    let webhooks = repo().join("tests/data/webhooks");
    for (folder, platform) in [
        ("github", CiPlatform::GithubActions),
        ("gitlab", CiPlatform::GitlabCi),
        ("jenkins", CiPlatform::Jenkins),
        ("azure-devops", CiPlatform::AzureDevops),
        ("circleci", CiPlatform::Circleci),
    ] {
        let mut bodies = Vec::new();
        for path in files(&webhooks.join(folder)) {
            if path.is_dir() {
                // GitHub: the folder name is the X-GitHub-Event header.
                let event = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                bodies.extend(files(&path).into_iter().map(|p| (event.to_string(), p)));
            } else if path.extension().is_some_and(|e| e == "json") {
                bodies.push((String::new(), path));
            }
        }
        for (event, path) in bodies {
            let body = std::fs::read(&path).expect("readable");
            cases.push((
                path.display().to_string(),
                "webhook",
                webhook_input(platform, &event, &body),
            ));
        }
    }
    let generic = br#"{"id":"d-1","service":"checkout","environment":"prod","status":"failure","pipeline":"deploy","run_id":"7","failed_steps":["migrate"]}"#;
    cases.push((
        "generic".into(),
        "webhook",
        webhook_input(CiPlatform::Generic, "", generic),
    ));

    let labelled = std::fs::read_to_string(repo().join("tests/data/categorization/labelled.jsonl"))
        .expect("labelled lines");
    for (i, line) in labelled.lines().enumerate().step_by(7) {
        cases.push((
            format!("labelled.jsonl:{}", i + 1),
            "log_record",
            line.into(),
        ));
    }
    cases.push((
        "cri line with key".into(),
        "log_record",
        b"billing/production\x002016-10-06T00:17:09.669794202Z stderr F Error: UPGRADE FAILED"
            .to_vec(),
    ));

    for (i, line) in labelled.lines().enumerate().step_by(11) {
        cases.push((
            format!("labelled.jsonl:{} as a categorize --input line", i + 1),
            "offline_line",
            line.into(),
        ));
    }
    cases.push((
        "an input object with numbers".into(),
        "offline_line",
        br#"{"message":"OOMKilled","environment":"prod","status_codes":[503],"error_rate":12.5}"#
            .to_vec(),
    ));
    for body in [
        r#"{"by":"alice"}"#,
        r#"{"by":"bob","decision":"reject","comment":"change freeze"}"#,
        r#"{"by":"al\nice"}"#,
        r#"{"by":"x","decision":"maybe"}"#,
        "not json",
    ] {
        cases.push((
            format!("approval body {body}"),
            "approval_body",
            format!("checkout/production#1764400000500.684c6ca6\n{body}").into_bytes(),
        ));
    }
    cases.push((
        "approval for something that is not a recovery id".into(),
        "approval_body",
        b"not-a-recovery\n{\"by\":\"alice\"}".to_vec(),
    ));

    cases.push((
        "default_rules.yaml".into(),
        "rule_pack",
        std::fs::read(repo().join("src/stages/categorize/default_rules.yaml")).expect("pack"),
    ));
    for path in files(&repo().join("tests/data/simulate/policy-next")) {
        let text = std::fs::read(&path).expect("readable");
        cases.push((path.display().to_string(), "policy", text));
    }

    let n = replay(cases);
    assert!(n > 50, "only {n} seed inputs");
}
