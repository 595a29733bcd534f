#!/usr/bin/env bash
# Runs medic's fuzz targets for a bounded time each, one after the other.
#
#   fuzz/run.sh                          # every target, 60 s each
#   FUZZ_SECONDS=300 fuzz/run.sh webhook policy
#   fuzz/run.sh --seed-only              # only (re)build the seed corpora
#
# Each target's corpus (fuzz/corpus/<target>/, not committed) is seeded first
# from the real material: ../shared/fixtures (FIXTURES overrides the path;
# skipped when absent), tests/data, demo/, the built-in rule pack and policy,
# the YAML examples in docs/, the schema examples and published signature
# vectors (written by the target itself at start-up, see
# medic::fuzzing::seeds), and every past crash in fuzz/regressions/<target>/.
#
# Environment:
#   FUZZ_SECONDS   seconds per target (default 60)
#   FUZZ_ARGS      extra libFuzzer arguments (e.g. "-jobs=2 -workers=2")
#   FIXTURES       the shared fixtures folder (default ../shared/fixtures)
#   CARGO_TARGET_DIR  where cargo builds (default fuzz/target)
#
# Exit status 1 when any target failed; its crashing input is under
# fuzz/artifacts/<target>/ (see fuzz/README.md for what to do with it).
# A summary line per target (executions, executions per second, corpus
# size) is printed at the end and kept in fuzz/logs/summary.txt.
set -euo pipefail

cd "$(dirname "$0")"
fuzz=$PWD
repo=$(cd .. && pwd)
seconds=${FUZZ_SECONDS:-60}
fixtures=${FIXTURES:-$repo/../shared/fixtures}
all_targets=(log_record webhook avro_decode rule_pack policy verify_signature approval_body offline_line)

seed_only=false
targets=()
for arg in "$@"; do
  case "$arg" in
    --seed-only) seed_only=true ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    *)
      if [[ ! " ${all_targets[*]} " == *" $arg "* ]]; then
        echo "unknown target $arg (known: ${all_targets[*]})" >&2
        exit 2
      fi
      targets+=("$arg")
      ;;
  esac
done
if [ ${#targets[@]} -eq 0 ]; then targets=("${all_targets[@]}"); fi

# Writes stdin to corpus file $1/$2.
put() { mkdir -p "$1"; cat >"$1/$2"; }

# Every line of file $2 (at most $3 lines) as its own input in $1, each prefixed with $4.
put_lines() {
  local dir=$1 file=$2 max=$3 prefix=${4:-} n=0 base
  base=$(basename "$file")
  while IFS= read -r line || [ -n "$line" ]; do
    if [ -z "$line" ]; then continue; fi
    printf '%s%s' "$prefix" "$line" | put "$dir" "seed-$base-$n"
    n=$((n + 1))
    if [ "$n" -ge "$max" ]; then break; fi
  done <"$file"
}

# The ```yaml blocks of a Markdown file, one input each.
put_yaml_blocks() {
  local dir=$1 file=$2
  awk -v dir="$dir" -v base="$(basename "$file" .md)" '
    /^```yaml/ { n++; out = dir "/seed-doc-" base "-" n; inblock = 1; next }
    /^```/ && inblock { inblock = 0; close(out); next }
    inblock { print > out }
  ' "$file"
}

# A webhook input: platform digit $2, event line $3, body file $4 → $1.
put_webhook() {
  local dir=$1 digit=$2 event=$3 body=$4 name
  name=$(basename "$(dirname "$body")")_$(basename "$body")
  { printf '%s%s\n' "$digit" "$event"; cat "$body"; } | put "$dir" "seed-$name"
}

seed_log_record() {
  local dir=$1 f
  for f in "$repo"/demo/logs/*; do put_lines "$dir" "$f" 50; done
  put_lines "$dir" "$repo/tests/data/categorization/labelled.jsonl" 200
  printf 'billing/production\0002016-10-06T00:17:09.669794202Z stderr F Error: UPGRADE FAILED: another operation is in progress' |
    put "$dir" seed-cri-with-key
  [ -d "$fixtures" ] || return 0
  local k8s=$fixtures/shippers/fluent-bit/kubernetes-filter-fixtures
  if [ -d "$k8s" ]; then
    for f in "$k8s"/log/*/*.log; do put_lines "$dir" "$f" 5; done
    # Fluent Bit's output records are [time, record]: the record is the Kafka value.
    for f in "$k8s"/out/*/*.out; do
      sed -E 's/^\[[0-9.]+, *(.*)\]$/\1/' "$f" | put "$dir" "seed-$(basename "$f")"
    done
  fi
  for f in "$fixtures"/failure-text/tools/helm/golden-error-outputs/*; do
    if [ -f "$f" ]; then put "$dir" "seed-helm-$(basename "$f")" <"$f"; fi
  done
  for f in "$fixtures"/failure-text/node-problem-detector/kernel_log_generator_problems/*; do
    if [ -f "$f" ]; then put_lines "$dir" "$f" 5; fi
  done
  return 0
}

seed_webhook() {
  local dir=$1 root f
  # Platform digits: medic::fuzzing::PLATFORMS.
  for root in "$repo/tests/data/webhooks" "$fixtures/webhooks"; do
    [ -d "$root" ] || continue
    for f in "$root"/github/*/*.json; do
      if [ -f "$f" ]; then put_webhook "$dir" 0 "$(basename "$(dirname "$f")")" "$f"; fi
    done
    for f in "$root"/gitlab/*.json; do if [ -f "$f" ]; then put_webhook "$dir" 1 "" "$f"; fi; done
    for f in "$root"/jenkins/*.json; do if [ -f "$f" ]; then put_webhook "$dir" 2 "" "$f"; fi; done
    for f in "$root"/azure-devops/*.json; do if [ -f "$f" ]; then put_webhook "$dir" 3 "" "$f"; fi; done
    for f in "$root"/circleci/*.json; do if [ -f "$f" ]; then put_webhook "$dir" 4 "" "$f"; fi; done
  done
  put_webhook "$dir" 0 workflow_job "$repo/demo/ci/github-workflow_job-failure.json"
  put_webhook "$dir" 1 "Pipeline Hook" "$repo/demo/ci/gitlab-pipeline-failed.derived.json"
  put_webhook "$dir" 4 "" "$repo/demo/ci/circleci-workflow-completed-failed.json"
  printf '5\n{"id":"d-1","service":"checkout","environment":"prod","status":"failure","pipeline":"deploy","run_id":"7","failed_steps":["migrate"]}' |
    put "$dir" seed-generic
  return 0
}

seed_rule_pack() {
  local dir=$1
  # The built-in pack in packs of 12 rules (renamed, so that they add to the
  # excerpt rule_pack loads them over rather than replace it) and its pattern
  # sections: whole, it is 130 KB and would slow every execution down.
  awk -v dir="$dir" '
    /^critical_patterns:/ { tail = 1 }
    tail { patterns = patterns $0 "\n"; next }
    /^  - \{id: / {
      sub(/\{id: /, "{id: seed.")
      chunk = chunk $0 "\n"
      if (++n % 12 == 0) { printf "version: 1\nrules:\n%s", chunk > (dir "/seed-default-rules-" n); close(dir "/seed-default-rules-" n); chunk = "" }
    }
    END {
      if (chunk != "") printf "version: 1\nrules:\n%s", chunk > (dir "/seed-default-rules-" n)
      printf "version: 1\n%s", patterns > (dir "/seed-default-patterns")
    }
  ' "$repo/src/stages/categorize/default_rules.yaml"
  put_yaml_blocks "$dir" "$repo/docs/categorization.md"
  printf 'version: 1\nrules:\n  - id: resource.oom-killed\n    enabled: false\n  - id: resource.evicted\n    type: infrastructure\n    keywords: [Evicted, "node was low on"]\n    weight: 2.5\n  - id: team.reset\n    type: network\n    keywords: [connection reset]\n    regex: "connection reset by (peer|host)"\n    weight: 2.0\nignore_patterns:\n  - id: team.noise\n    keywords: [deprecated]\n' |
    put "$dir" seed-overlay
}

seed_policy() {
  local dir=$1 f
  put "$dir" seed-default_strategies.yaml <"$repo/src/stages/decide/default_strategies.yaml"
  for f in "$repo"/tests/data/simulate/policy-next/*.yaml; do put "$dir" "seed-$(basename "$f")" <"$f"; done
  for f in "$repo"/docs/strategies.md "$repo"/docs/recovery.md; do put_yaml_blocks "$dir" "$f"; done
}

seed_approval_body() {
  local dir=$1 n=0 body
  for body in '{"by":"alice"}' '{"by":"alice","decision":"approve","comment":"rollback is fine"}' \
    '{"by":"bob","decision":"reject","comment":"change freeze"}' '{"by":"al\nice"}' '{"by":"x","decision":"maybe"}'; do
    n=$((n + 1))
    printf 'checkout/production#1764400000500.684c6ca6\n%s' "$body" | put "$dir" "seed-approval-$n"
  done
}

seed_offline_line() {
  local dir=$1
  put_lines "$dir" "$repo/tests/data/categorization/labelled.jsonl" 100
  put_lines "$dir" "$repo/tests/data/categorization/healthy.txt" 30
  printf '{"message":"OOMKilled","environment":"prod","status_codes":[503],"error_rate":12.5}' |
    put "$dir" seed-offline-object
}

seed() {
  local t=$1 dir=$fuzz/corpus/$1
  mkdir -p "$dir"
  case "$t" in
    log_record) seed_log_record "$dir" ;;
    webhook) seed_webhook "$dir" ;;
    rule_pack) seed_rule_pack "$dir" ;;
    policy) seed_policy "$dir" ;;
    approval_body) seed_approval_body "$dir" ;;
    offline_line) seed_offline_line "$dir" ;;
    avro_decode | verify_signature) ;; # written by the target: MEDIC_FUZZ_SEED_DIR
  esac
  if [ -d "$fuzz/regressions/$t" ]; then
    cp "$fuzz/regressions/$t"/* "$dir"/ 2>/dev/null || true
  fi
}

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "cargo-fuzz and a nightly toolchain are needed: see fuzz/README.md" >&2
  exit 2
fi

# No AddressSanitizer: librdkafka's configure step cannot link the
# instrumented zstd. Debug assertions on, so integer overflow panics.
build_flags=(--sanitizer none --debug-assertions)

mkdir -p "$fuzz/logs"
summary=$fuzz/logs/summary.txt
: >"$summary"
failed=()
for t in "${targets[@]}"; do
  seed "$t"
  if $seed_only; then
    MEDIC_FUZZ_SEED_DIR=$fuzz/corpus/$t cargo +nightly fuzz run "${build_flags[@]}" "$t" \
      "$fuzz/corpus/$t" -- -runs=0 >/dev/null 2>&1 || true
    echo "$t: $(find "$fuzz/corpus/$t" -type f | wc -l) seed inputs"
    continue
  fi
  echo "== $t: ${seconds} s ($(find "$fuzz/corpus/$t" -type f | wc -l) inputs in the corpus before)"
  log=$fuzz/logs/$t.log
  extra=()
  if [ -f "$fuzz/dicts/$t.dict" ]; then extra+=(-dict="$fuzz/dicts/$t.dict"); fi
  # YAML targets: keep inputs small enough for thousands of executions a second.
  case "$t" in rule_pack | policy) extra+=(-max_len=16384) ;; esac
  # shellcheck disable=SC2086 # FUZZ_ARGS is a list of libFuzzer flags.
  if MEDIC_FUZZ_SEED_DIR=$fuzz/corpus/$t cargo +nightly fuzz run "${build_flags[@]}" "$t" \
    "$fuzz/corpus/$t" -- -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 \
    -print_final_stats=1 "${extra[@]}" ${FUZZ_ARGS:-} >"$log" 2>&1; then
    result=ok
  else
    result=FAILED
    failed+=("$t")
    grep -E "panicked at|^SUMMARY|Test unit written|ERROR: libFuzzer" "$log" | head -5 || true
  fi
  execs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1)
  rate=$(grep -oE 'stat::average_exec_per_sec: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1)
  line="$t: $result, ${seconds} s, ${execs:-?} execs, ${rate:-?} exec/s, $(find "$fuzz/corpus/$t" -type f | wc -l) corpus inputs"
  echo "$line" | tee -a "$summary"
done

if $seed_only; then exit 0; fi
echo
cat "$summary"
if [ ${#failed[@]} -gt 0 ]; then
  echo "failed: ${failed[*]} (inputs under fuzz/artifacts/; logs under fuzz/logs/)" >&2
  exit 1
fi
