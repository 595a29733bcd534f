//! `medic categorize`: categorization without Kafka, through the stage's own
//! window code. Input lines are what is already in Kafka: medic's own
//! `{message, environment, ...}` objects, or any record a log shipper writes
//! (Fluent Bit, Vector, Filebeat, plain `{message}`), unknown fields ignored.

use super::read_input;
use anyhow::{bail, Context};
use medic::config::IngestConfig;
use medic::stages::categorize::{offline, rules::RulePack};
use medic::stages::ingest::shippers;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

/// One `--input` line: medic's offline object when it is one, else the
/// record as ingest would read it from a shipper's topic.
fn input_line(line: &str, ingest: &IngestConfig) -> Result<offline::OfflineInput, String> {
    let strict = offline::OfflineInput::parse_line(line);
    if strict.is_ok() || !line.trim_start().starts_with('{') {
        return strict;
    }
    let parsed = shippers::parse(line.as_bytes(), None, ingest).map_err(|e| e.to_string())?;
    if parsed.text.trim().is_empty() {
        return Err(
            "no message text: expected `message`, `log`, `msg` or `text` (Fluent Bit, Vector, Filebeat or medic's own fields)"
                .into(),
        );
    }
    Ok(offline::OfflineInput {
        message: parsed.text,
        environment: parsed.environment,
        service: parsed.service,
        ..Default::default()
    })
}

/// The text of one `--unmatched` line: the message of a shipper record, or the line.
fn text_of(line: &str, ingest: &IngestConfig) -> String {
    match line.trim_start().starts_with('{') {
        true => shippers::parse(line.as_bytes(), None, ingest)
            .map(|p| p.text)
            .unwrap_or_else(|_| line.to_string()),
        false => line.to_string(),
    }
}

/// `medic categorize`: one MESSAGE, `--input` lines, or `--unmatched` shapes.
pub(crate) fn command(
    pack: &RulePack,
    ingest: &IngestConfig,
    message: Option<String>,
    input: Option<PathBuf>,
    unmatched: Option<PathBuf>,
    environment: Option<String>,
    top: usize,
) -> anyhow::Result<ExitCode> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if let Some(path) = input {
        for (n, line) in read_input(&path)?.lines().enumerate() {
            let line = line.with_context(|| format!("reading {}", path.display()))?;
            let record = match input_line(&line, ingest) {
                Ok(input) => {
                    let mut value = serde_json::to_value(offline::categorize(pack, &input))?;
                    value["line"] = serde_json::json!(n + 1);
                    value
                }
                Err(error) => serde_json::json!({"line": n + 1, "error": error}),
            };
            writeln!(out, "{record}")?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(path) = unmatched {
        let lines: Vec<String> = read_input(&path)?
            .lines()
            .map(|l| l.map(|l| text_of(&l, ingest)))
            .collect::<Result<_, _>>()?;
        let shapes = offline::unmatched_shapes(pack, lines.iter().map(String::as_str));
        let total: usize = shapes.iter().map(|s| s.1).sum();
        writeln!(
            out,
            "{total} of {} lines matched no rule; {} shapes, most frequent first:",
            lines.len(),
            shapes.len()
        )?;
        for (shape, count, example) in shapes.iter().take(top) {
            writeln!(out, "{count:>7}  {shape}")?;
            if example != shape {
                writeln!(out, "         e.g. {example}")?;
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let Some(message) = message else {
        bail!("give a MESSAGE, --input FILE or --unmatched FILE (see medic categorize --help)");
    };
    let input = offline::OfflineInput {
        message,
        environment,
        ..Default::default()
    };
    let r = offline::categorize(pack, &input);
    let Some(failure_type) = r.failure_type else {
        writeln!(
            out,
            "no rule matched: medic reports no failure for this text (rule pack {})",
            r.rule_pack_version
        )?;
        return Ok(ExitCode::SUCCESS);
    };
    writeln!(
        out,
        "type        {failure_type} (confidence {:.2})",
        r.confidence
    )?;
    if let Some(ru) = &r.runner_up {
        writeln!(
            out,
            "runner-up   {} (confidence {:.2})",
            ru.failure_type, ru.confidence
        )?;
    }
    if let Some(severity) = r.severity {
        writeln!(
            out,
            "severity    {severity} (environment {})",
            input.environment.as_deref().unwrap_or("unknown")
        )?;
    }
    writeln!(
        out,
        "transient   {}",
        if r.transient { "yes" } else { "no" }
    )?;
    let components: Vec<&str> = r.components.iter().map(|c| c.as_str()).collect();
    writeln!(out, "components  {}", components.join(", "))?;
    for e in &r.evidence {
        writeln!(
            out,
            "evidence    {} ({}, weight {}): {:?} at {}..{}",
            e.rule_id, e.failure_type, e.weight, e.matched, e.span_start, e.span_end
        )?;
    }
    for p in &r.pattern_hits {
        writeln!(
            out,
            "pattern     {} ({}): {:?}",
            p.rule_id, p.section, p.matched
        )?;
    }
    writeln!(out, "rule pack   {}", r.rule_pack_version)?;
    Ok(ExitCode::SUCCESS)
}
