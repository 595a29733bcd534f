//! The structure of a verdict, as `docs/categorization.md` describes it: a
//! cause outranks any sum of symptoms, close scores go by the TAXONOMY order,
//! ignore patterns drop lines rather than messages, failing output is never
//! left unnamed, and each boundary rule of `TAXONOMY.md` holds — one table
//! per rule. Texts are tool output as the tools print it.

#[path = "common/corpus.rs"]
mod corpus;

use medic::domain::{CategorizedFailure, FailureType, FailureType::*};
use medic::stages::categorize::offline::failure_of_lines;
use medic::stages::categorize::rules::RulePack;

/// What the stage reports for a failed CI run whose webhook carried `log`.
fn failed_ci_run(pack: &RulePack, log: &str) -> CategorizedFailure {
    corpus::failed_ci_run(pack, log).expect("a failed run opens")
}

fn verdict(pack: &RulePack, text: &str) -> Option<CategorizedFailure> {
    failure_of_lines(pack, "ci", text.lines())
}

fn type_of(text: &str) -> Option<FailureType> {
    verdict(&RulePack::default_pack(), text).map(|f| f.failure_type)
}

#[test]
fn a_cause_outranks_any_sum_of_symptoms() {
    let log = "\
[INFO] Building checkout 1.4.0
[ERROR] Failed to execute goal on project checkout: Could not resolve dependencies for project com.acme:checkout:jar:1.4.0: Could not find artifact com.acme:pricing:jar:2.1.0 in central (https://repo.maven.apache.org/maven2)
[ERROR] BUILD FAILURE
[ERROR] Tests run: 12, Failures: 3, Errors: 0, Skipped: 0
Error: Process completed with exit code 1.
FAILED: tests failed, see above
make: *** [Makefile:12: test] Error 1";
    let f = verdict(&RulePack::default_pack(), log).expect("named");
    assert_eq!(f.failure_type, Dependency, "{f:#?}");
    assert!(f.evidence.iter().any(|e| e.failure_type == Application));
    assert!(!f.summary.contains("no cause recognised"), "{}", f.summary);
}

#[test]
fn failing_output_with_no_cause_is_application_with_low_confidence() {
    for log in [
        "=================================== FAILURES ===================================\n___ test_total ___\n    assert total(cart) == 42\nE   assert 41 == 42\n=========================== short test summary info ============================\nFAILED tests/test_cart.py::test_total - assert 41 == 42",
        "--- FAIL: TestTotal (0.00s)\n    cart_test.go:12: got 41, want 42\nFAIL\nFAIL\texample.com/cart\t0.004s",
        "error[E0308]: mismatched types\n --> src/cart.rs:12:5\nerror: could not compile `cart` (lib) due to 1 previous error",
        "** BUILD FAILED **\n\nThe following build commands failed:\n\tCompileSwift normal arm64 Cart.swift",
    ] {
        let pack = RulePack::default_pack().without_model();
        let f = verdict(&pack, log).unwrap_or_else(|| panic!("unnamed: {log}"));
        assert_eq!(f.failure_type, Application, "{log}");
        assert!(f.confidence <= 0.4, "{log}: confidence {}", f.confidence);
        assert!(f.summary.contains("no cause recognised"), "{}", f.summary);
    }
}

#[test]
fn an_error_level_line_alone_opens_no_failure_but_names_one_in_a_failing_window() {
    // Healthy services log errors all day: no window, no failure.
    let line = "2025-11-29T07:06:40Z ERROR checkout: order 81723 rejected by coupon service";
    assert_eq!(type_of(line), None);
    assert_eq!(type_of("level=error msg=\"cache refresh skipped\""), None);
    // In a failed run it is the failure wording there is.
    let pack = RulePack::default_pack().without_model();
    let f = failed_ci_run(&pack, line);
    assert_eq!(f.failure_type, Application);
    assert!(f.confidence <= 0.4, "{}", f.confidence);
    assert!(
        f.evidence
            .iter()
            .any(|e| e.rule_id == "symptom.error-level"),
        "{:#?}",
        f.evidence
    );
}

#[test]
fn a_failed_run_with_no_recognised_text_is_still_named() {
    let log =
        "Started by user deploy-bot\n[Pipeline] sh\n+ ./deploy.sh\n[Pipeline] End of Pipeline";
    let f = failed_ci_run(&RulePack::default_pack().without_model(), log);
    assert_eq!(f.failure_type, Application);
    assert_eq!(f.confidence, 0.2);
    assert!(f
        .evidence
        .iter()
        .any(|e| e.rule_id == "medic.ci-failure-unmatched"));
    // A cause in the run's log decides as it would in shipped lines.
    let f = failed_ci_run(
        &RulePack::default_pack(),
        "+ helm upgrade --install checkout ./chart\nError: UPGRADE FAILED: another operation (install/upgrade/rollback) is in progress",
    );
    assert_eq!(f.failure_type, HumanError, "{f:#?}");
}

#[test]
fn an_ignore_pattern_drops_its_line_not_the_message() {
    let text = "npm WARN deprecated request@2.88.2: request has been deprecated\ndial tcp 10.0.0.7:5432: connect: connection refused";
    assert_eq!(type_of(text), Some(Network));
    // The ignored line on its own gives nothing.
    assert_eq!(
        type_of("npm WARN deprecated request@2.88.2: request has been deprecated"),
        None
    );
}

#[test]
fn close_scores_go_by_the_taxonomy_order_and_keep_the_runner_up() {
    let pack = RulePack::load(&[(
        "team.yaml".into(),
        "version: 1\nrules:\n  - {id: t.a, type: application, keywords: [\"widget exploded\"], weight: 4}\n  - {id: t.n, type: network, keywords: [\"link flapped\"], weight: 3}\n".into(),
    )])
    .expect("loads");
    let f = verdict(&pack, "widget exploded\nlink flapped").expect("named");
    // 3 is at least 0.75 of 4: close, so network (ranked above application) wins.
    assert_eq!(f.failure_type, Network);
    assert_eq!(f.runner_up.map(|r| r.failure_type), Some(Application));
}

#[test]
fn an_operator_cancel_decides_over_the_causes_it_interrupted() {
    let log = "Step 4/9 : RUN npm ci\nnpm ERR! network request to https://registry.npmjs.org/left-pad failed, reason: getaddrinfo EAI_AGAIN registry.npmjs.org\nError: The operation was canceled.\nThe run was canceled by @octocat.";
    assert_eq!(type_of(log), Some(HumanError));
}

#[test]
fn keywords_match_code_tokens_on_their_boundaries() {
    // `EMFILE` is a resource error; it is not inside `Gemfile`.
    assert_eq!(
        type_of("Error: EMFILE: too many open files, watch"),
        Some(Resource)
    );
    assert_ne!(type_of("Gemfile.lock updated"), Some(Resource));
}

/// One table per boundary rule of TAXONOMY.md: (text, type it must get).
fn table(rule: &str, rows: &[(&str, FailureType)]) {
    let wrong: Vec<String> = rows
        .iter()
        .filter(|(text, want)| type_of(text) != Some(*want))
        .map(|(text, want)| format!("  {text:?}: want {want}, got {:?}", type_of(text)))
        .collect();
    assert!(
        wrong.is_empty(),
        "boundary rule {rule:?}:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn boundary_exit_126_and_file_modes_are_configuration() {
    table("exit 126 / file mode is configuration", &[
        ("/bin/sh: 1: ./deploy.sh: Permission denied\nError: Process completed with exit code 126.", Configuration),
        ("The command '/bin/sh -c ./build.sh' returned a non-zero code: 126", Configuration),
    ]);
}

#[test]
fn boundary_database_privilege_errors_are_security() {
    table("a database privilege error is security", &[
        ("ERROR:  permission denied for table orders", Security),
        ("ERROR 1142 (42000): SELECT command denied to user 'app'@'10.0.0.3' for table 'orders'", Security),
    ]);
}

#[test]
fn boundary_tls_certificates_are_security_and_handshakes_network() {
    table("TLS: certificate errors security, protocol errors network", &[
        ("x509: certificate signed by unknown authority", Security),
        ("SSL: CERTIFICATE_VERIFY_FAILED certificate verify failed: certificate has expired (_ssl.c:1129)", Security),
        ("curl: (60) SSL certificate problem: unable to get local issuer certificate", Security),
        ("remote error: tls: protocol version not supported", Network),
        ("net/http: TLS handshake timeout", Network),
        ("SSL routines:ssl3_read_bytes:sslv3 alert handshake failure", Network),
    ]);
}

#[test]
fn boundary_runtime_too_old_is_configuration_and_packages_needing_newer_are_dependency() {
    table("our code ahead of the runtime is configuration; a package needing newer is dependency", &[
        ("SyntaxError: Unexpected token '?'\n    at wrapSafe (internal/modules/cjs/loader.js:915:16)\nNode.js v12.22.12", Configuration),
        ("go: go.mod requires go >= 1.22 (running go 1.21.5; GOTOOLCHAIN=local)", Configuration),
        ("error: package `clap_lex v0.7.0` cannot be built because it requires rustc 1.74 or newer, while the currently active rustc version is 1.70.0", Dependency),
        ("npm ERR! engine Unsupported engine for vite@5.0.0: wanted: {\"node\":\"^18.0.0 || >=20.0.0\"} (current: {\"node\":\"16.20.2\",\"npm\":\"8.19.4\"})", Dependency),
    ]);
}

#[test]
fn boundary_external_link_checks_are_dependency_own_links_application() {
    table("external link checks dependency, own broken links application", &[
        ("[✖] https://example.org/spec.html → Status: 404", Dependency),
        ("ERROR: 1 dead links found!\n  [✖] https://docs.other-project.io/guide → Status: 503", Dependency),
        ("Docusaurus found broken links!\n- On source page path = /docs/intro:\n   -> linking to /docs/missing", Application),
    ]);
}

#[test]
fn boundary_process_checks_are_human_error_and_lint_is_application() {
    table("merge conflicts, uncommitted generated files, approvals human_error; lint application", &[
        ("CONFLICT (content): Merge conflict in src/cart.rs\nAutomatic merge failed; fix conflicts and then commit the result.", HumanError),
        ("Generated files are out of date, please run `make generate` and commit the changes.\ngit diff --exit-code", HumanError),
        ("At least 1 approving review is required by reviewers with write access.", HumanError),
        ("src/cart.ts\n  12:5  error  'total' is assigned a value but never used  no-unused-vars\n\n✖ 1 problem (1 error, 0 warnings)", Application),
        ("Would reformat: src/cart.py\n1 file would be reformatted, 20 files already formatted", Application),
    ]);
}

#[test]
fn boundary_rate_limits_and_quotas_are_resource() {
    table("rate limits and quotas are resource", &[
        ("toomanyrequests: You have reached your pull rate limit. You may increase the limit by authenticating and upgrading", Resource),
        ("Error: API rate limit exceeded for installation ID 1234.", Resource),
        ("Error: Error creating instance: googleapi: Error 403: Quota 'CPUS' exceeded.  Limit: 24.0 in region us-central1., quotaExceeded", Resource),
        ("An error occurred (ThrottlingException) when calling the DescribeStacks operation (reached max retries: 4): Rate exceeded", Resource),
    ]);
}

#[test]
fn boundary_checksums_of_downloads_are_dependency_of_stored_data_data() {
    table("checksum of a download dependency, of stored data data", &[
        ("verifying github.com/acme/pricing@v1.2.0: checksum mismatch\n\tdownloaded: h1:abc=\n\tgo.sum:     h1:def=\n\nSECURITY ERROR", Dependency),
        ("npm ERR! code EINTEGRITY\nnpm ERR! sha512-abc integrity checksum failed when using sha512: wanted sha512-abc but got sha512-def.", Dependency),
        ("ERROR:  invalid page in block 4711 of relation base/16384/2619", Data),
        ("Flyway: Validate failed: Migration checksum mismatch for migration version 3", Data),
    ]);
}

#[test]
fn boundary_operator_actions_are_human_error() {
    table(
        "an explicit operator action is human_error",
        &[
            (
                "Build was aborted\nAborted by alice\nFinished: ABORTED",
                HumanError,
            ),
            (
                "##[error]The operation was canceled.\nThe run was canceled by @alice.",
                HumanError,
            ),
        ],
    );
}

#[test]
fn boundary_a_timeout_with_a_named_cause_takes_the_cause() {
    table("a timeout whose cause is named takes the cause's type", &[
        ("dial tcp: lookup db.internal on 10.96.0.10:53: read udp 10.0.0.5:41234->10.96.0.10:53: i/o timeout", Network),
        ("ERROR 1205 (HY000): Lock wait timeout exceeded; try restarting transaction", Timing),
        ("context deadline exceeded", Timing),
    ]);
}
