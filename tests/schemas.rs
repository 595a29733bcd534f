//! The Avro schemas are the public contract: these tests keep them parseable,
//! consistent across files, in sync with the Rust types and topics, and
//! evolving only compatibly.

use apache_avro::schema_compatibility::SchemaCompatibility;
use medic::codec::{self, AvroRecord, RELEASED_SOURCES, SCHEMA_SOURCES};
use medic::domain::*;
use medic::topics::{specs, TOPIC_SOURCES};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

fn example_text(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("schemas/examples/{name}.json"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Decodes the example into `T`, encodes it, and checks the bytes decode to
/// the same value, re-encode to the same bytes, and read in apache-avro too.
fn round_trip<T: AvroRecord + PartialEq + std::fmt::Debug>() {
    let value: T = serde_json::from_str(&example_text(T::SCHEMA))
        .unwrap_or_else(|e| panic!("{} example: {e}", T::SCHEMA));
    let bytes = codec::encode(&value).expect("encodes");
    let decoded: T = codec::decode(&bytes).expect("decodes");
    assert_eq!(decoded, value, "{}", T::SCHEMA);
    assert_eq!(
        codec::encode(&decoded).expect("re-encodes"),
        bytes,
        "{} is not byte-exact",
        T::SCHEMA
    );

    let (_, text) = SCHEMA_SOURCES
        .iter()
        .find(|(n, _)| *n == T::SCHEMA)
        .expect("listed");
    let reference = apache_avro::Schema::parse_str(text).expect("apache-avro parses");
    // apache-avro 0.22 leaves `{"type":"long"}` in the canonical form of a
    // logical type, against the spec's [PRIMITIVES] rule; apply that rule and
    // check the header against the spec's CRC-64-AVRO of the canonical form.
    let canonical = reference
        .canonical_form()
        .replace(r#"{"type":"long"}"#, r#""long""#);
    assert_eq!(
        bytes[2..10],
        crc64_avro(canonical.as_bytes()).to_le_bytes(),
        "{} fingerprint",
        T::SCHEMA
    );
    #[allow(deprecated)]
    let read = apache_avro::from_avro_datum(&reference, &mut &bytes[10..], None);
    assert!(
        read.is_ok(),
        "apache-avro cannot read medic's {}: {read:?}",
        T::SCHEMA
    );
}

#[test]
fn every_example_round_trips_byte_exact_and_reads_in_the_reference_implementation() {
    round_trip::<RawLogEnvelope>();
    round_trip::<Signal>();
    round_trip::<CiEvent>();
    round_trip::<CategorizedFailure>();
    round_trip::<CorrelationWindow>();
    round_trip::<RecoveryPlan>();
    round_trip::<Approval>();
    round_trip::<RecoveryState>();
    round_trip::<RecoveryOutcome>();
    round_trip::<AuditRecord>();
    round_trip::<DeadLetter>();
    round_trip::<NotificationRecord>();
    round_trip::<StrategyStats>();
}

/// The fingerprint algorithm as the Avro specification prints it.
fn crc64_avro(data: &[u8]) -> u64 {
    const EMPTY: u64 = 0xc15d_213a_a4d7_a795;
    let table: Vec<u64> = (0..256u64)
        .map(|i| (0..8).fold(i, |fp, _| (fp >> 1) ^ (EMPTY & (fp & 1).wrapping_neg())))
        .collect();
    data.iter().fold(EMPTY, |fp, b| {
        (fp >> 8) ^ table[((fp ^ u64::from(*b)) & 0xff) as usize]
    })
}

#[test]
fn the_fingerprint_matches_the_specification_vector() {
    // Avro specification: the fingerprint of "int" is 0x7275d51a3f395c8f.
    assert_eq!(crc64_avro(br#""int""#), 0x7275_d51a_3f39_5c8f);
}

fn files_in(dir: &str, ext: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(dir))
        .expect("directory exists")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(ext))
        .collect();
    names.sort();
    names
}

#[test]
fn every_schema_file_is_compiled_in_with_an_example_and_a_released_version() {
    let compiled: Vec<String> = SCHEMA_SOURCES
        .iter()
        .map(|(n, _)| format!("{n}.avsc"))
        .collect();
    let mut sorted = compiled.clone();
    sorted.sort();
    assert_eq!(files_in("schemas", ".avsc"), sorted);
    assert_eq!(files_in("schemas/released", ".avsc"), sorted);
    let examples: Vec<String> = sorted.iter().map(|n| n.replace(".avsc", ".json")).collect();
    assert_eq!(files_in("schemas/examples", ".json"), examples);
}

#[test]
fn every_topic_file_is_compiled_in_and_names_a_schema() {
    let compiled: Vec<String> = TOPIC_SOURCES.iter().map(|(f, _)| f.to_string()).collect();
    let mut sorted = compiled.clone();
    sorted.sort();
    assert_eq!(files_in("topics", ".yaml"), sorted);
    for spec in specs() {
        assert!(
            spec.value == "raw" || SCHEMA_SOURCES.iter().any(|(n, _)| *n == spec.value),
            "topic {} names unknown schema {}",
            spec.name,
            spec.value
        );
        assert!(
            spec.partitions > 0 && spec.replication_factor > 0,
            "{}",
            spec.name
        );
    }
    let compacted: Vec<&str> = specs()
        .iter()
        .filter(|s| s.is_compacted())
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(
        compacted,
        ["categorize.windows", "decide.stats", "recovery.state"]
    );
    assert!(
        medic::topics::copartition_conflicts(specs().iter().map(|s| (s, s.partitions))).is_empty()
    );
}

/// Replaces nested named definitions by their names, so that an inline
/// definition and a reference to it compare equal.
fn by_name(t: &mut Value) {
    match t {
        Value::Object(map) => {
            if let Some(Value::String(name)) = map.get("name") {
                *t = Value::String(name.clone());
            } else {
                map.values_mut().for_each(by_name);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(by_name),
        _ => {}
    }
}

/// Named types (records, enums) with their definition, docs removed.
fn named_types(schema: &Value, out: &mut Vec<(String, Value)>) {
    match schema {
        Value::Object(map) => {
            if let (Some(Value::String(kind)), Some(Value::String(name))) =
                (map.get("type"), map.get("name"))
            {
                if kind == "record" || kind == "enum" {
                    let mut clean = map.clone();
                    clean.remove("doc");
                    clean.remove("namespace");
                    if let Some(Value::Array(fields)) = clean.get_mut("fields") {
                        for f in fields.iter_mut() {
                            if let Value::Object(f) = f {
                                f.remove("doc");
                                if let Some(t) = f.get_mut("type") {
                                    by_name(t);
                                }
                            }
                        }
                    }
                    out.push((name.clone(), Value::Object(clean)));
                }
            }
            map.values().for_each(|v| named_types(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| named_types(v, out)),
        _ => {}
    }
}

#[test]
fn a_type_used_by_several_schemas_is_defined_identically_in_each() {
    let mut seen: BTreeMap<String, (String, Value)> = BTreeMap::new();
    for (file, text) in SCHEMA_SOURCES {
        let json: Value = serde_json::from_str(text).expect("JSON");
        let mut types = Vec::new();
        named_types(&json, &mut types);
        for (name, def) in types {
            match seen.get(&name) {
                Some((first, earlier)) if *earlier != def => {
                    panic!("{name} differs between {first}.avsc and {file}.avsc");
                }
                Some(_) => {}
                None => {
                    seen.insert(name, (file.to_string(), def));
                }
            }
        }
    }
    assert!(seen.contains_key("FailureType") && seen.contains_key("RawLogEnvelope"));
}

/// Fields present in `new` but not in `old` that have no default, as `Record.field`.
fn added_without_default(old: &Value, new: &Value) -> Vec<String> {
    let mut old_types = Vec::new();
    named_types(old, &mut old_types);
    let mut new_types = Vec::new();
    named_types(new, &mut new_types);
    let mut problems = Vec::new();
    for (name, def) in &new_types {
        let Some((_, old_def)) = old_types.iter().find(|(n, _)| n == name) else {
            continue;
        };
        let field_names = |d: &Value| -> Vec<String> {
            d["fields"]
                .as_array()
                .map(|f| {
                    f.iter()
                        .filter_map(|f| f["name"].as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        let before = field_names(old_def);
        for field in def["fields"].as_array().into_iter().flatten() {
            let fname = field["name"].as_str().unwrap_or_default();
            if !before.iter().any(|b| b == fname) && field.get("default").is_none() {
                problems.push(format!("{name}.{fname}"));
            }
        }
    }
    problems
}

fn parse(text: &str) -> (Value, apache_avro::Schema) {
    (
        serde_json::from_str(text).expect("JSON"),
        apache_avro::Schema::parse_str(text).expect("Avro"),
    )
}

#[test]
fn every_schema_evolved_from_its_released_version_with_defaults_only() {
    for ((name, current), (released_name, released)) in SCHEMA_SOURCES.iter().zip(RELEASED_SOURCES)
    {
        assert_eq!(name, released_name);
        let (cur_json, cur) = parse(current);
        let (rel_json, rel) = parse(released);
        assert_eq!(
            added_without_default(&rel_json, &cur_json),
            Vec::<String>::new(),
            "{name}"
        );
        assert!(
            SchemaCompatibility::can_read(&rel, &cur).is_ok(),
            "{name}: new readers cannot read released data"
        );
        assert!(
            SchemaCompatibility::can_read(&cur, &rel).is_ok(),
            "{name}: released readers cannot read new data"
        );
    }
}

#[test]
fn the_evolution_check_rejects_a_new_field_without_default() {
    let (_, released) = RELEASED_SOURCES
        .iter()
        .find(|(n, _)| *n == "Approval")
        .expect("listed");
    let (rel_json, rel) = parse(released);
    let add = |field: &str| {
        let mut json = rel_json.clone();
        json["fields"]
            .as_array_mut()
            .expect("fields")
            .push(serde_json::from_str(field).expect("field"));
        json.to_string()
    };
    let (bad_json, bad) = parse(&add(r#"{"name": "ticket", "type": "string"}"#));
    assert_eq!(
        added_without_default(&rel_json, &bad_json),
        vec!["Approval.ticket".to_string()]
    );
    assert!(SchemaCompatibility::can_read(&rel, &bad).is_err());
    let (good_json, good) = parse(&add(
        r#"{"name": "ticket", "type": ["null", "string"], "default": null}"#,
    ));
    assert!(added_without_default(&rel_json, &good_json).is_empty());
    assert!(SchemaCompatibility::can_read(&rel, &good).is_ok());
}

#[test]
fn data_written_before_a_field_existed_decodes_with_its_default() {
    // Writer: Approval as it would have been without `reason`.
    let (_, current) = SCHEMA_SOURCES
        .iter()
        .find(|(n, _)| *n == "Approval")
        .expect("listed");
    let mut json: Value = serde_json::from_str(current).expect("JSON");
    json["fields"]
        .as_array_mut()
        .expect("fields")
        .retain(|f| f["name"] != "reason");
    let old: serde_avro_fast::Schema = json.to_string().parse().expect("old schema");

    #[derive(serde::Serialize)]
    struct OldApproval<'a> {
        recovery_id: &'a str,
        decision: &'a str,
        approver: &'a str,
        decided_at: i64,
    }
    let bytes = serde_avro_fast::to_datum_vec(
        &OldApproval {
            recovery_id: "web/staging#1",
            decision: "approved",
            approver: "alice",
            decided_at: 5,
        },
        &mut serde_avro_fast::ser::SerializerConfig::new(&old),
    )
    .expect("old writer");
    let read: Approval = serde_avro_fast::from_datum_slice(&bytes, &old).expect("new reader");
    assert_eq!(read.reason, None);
    assert_eq!(read.approver, "alice");
}
