//! Query checks against Prometheus' HTTP API (`/api/v1/query`,
//! `/api/v1/query_range`), as Argo Rollouts' and Flagger's Prometheus
//! analysis do it.
//!
//! A check holds when every sample of every series the query returns is
//! within the threshold (`below`: less than, `above`: greater than). With
//! `for_secs` the check asks for the range `[now - for_secs, now]` and holds
//! only when the data covers that window and every sample in it holds — the
//! `for` of an alerting rule. An empty answer, NaN, or data that does not
//! cover the window is *inconclusive*; `on_no_data` says what that counts as.
//!
//! Slots in the query (`{service}`, `{environment}`, …) are allowed only with
//! values of `[A-Za-z0-9._:/-]`, so a value from a log or payload can never
//! close a label matcher's quotes or add to the query.

use super::NoData;
use crate::executors::outbound;
use crate::executors::step::{StepDone, StepError, StepRequest, StepResult};
use crate::executors::template::{Slot, Template};
use crate::stages::Measured;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// Where Prometheus answers.
#[derive(Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusConfig {
    /// Base URL, e.g. `http://prometheus.monitoring:9090` (a path prefix is kept).
    pub url: String,
    /// Bearer token, `${env:NAME}` or `${file:/path}`; none when unset.
    #[serde(default)]
    pub token: Option<String>,
    /// Longest one query may take, in milliseconds (also sent as the query's `timeout`).
    #[serde(default = "ten_seconds")]
    pub timeout_ms: u64,
}

fn ten_seconds() -> u64 {
    10_000
}

impl std::fmt::Debug for PrometheusConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrometheusConfig")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

/// One query check's settings.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryConfig {
    /// PromQL as written, with slots such as `{service}`
    /// (`rate(x{service="{service}"}[5m])`): a brace pair around a slot
    /// name is a slot, every other brace is PromQL's.
    pub query: String,
    /// Healthy when every value is below this.
    #[serde(default)]
    pub below: Option<f64>,
    /// Healthy when every value is above this.
    #[serde(default)]
    pub above: Option<f64>,
    /// The threshold must hold over this many seconds up to now (0: now only).
    #[serde(default)]
    pub for_secs: u64,
    /// Resolution of the range asked for `for_secs`, in seconds; a tenth of
    /// `for_secs` (at least 1) when not set.
    #[serde(default)]
    pub step_secs: Option<u64>,
    /// What an answer without data counts as.
    #[serde(default)]
    pub on_no_data: NoData,
}

/// Healthy values: below `below` and above `above`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    /// Exclusive upper bound.
    pub below: Option<f64>,
    /// Exclusive lower bound.
    pub above: Option<f64>,
}

impl Threshold {
    fn holds(&self, v: f64) -> bool {
        self.below.is_none_or(|b| v < b) && self.above.is_none_or(|a| v > a)
    }
}

impl std::fmt::Display for Threshold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.below, self.above) {
            (Some(b), Some(a)) => write!(f, "between {a} and {b}"),
            (Some(b), None) => write!(f, "below {b}"),
            (None, Some(a)) => write!(f, "above {a}"),
            (None, None) => f.write_str("any value"),
        }
    }
}

/// A Prometheus HTTP API client (no redirects followed).
pub struct Prometheus {
    client: reqwest::Client,
    base: reqwest::Url,
    token: Option<String>,
    timeout: Duration,
}

/// One series of an answer: its labels (for messages) and samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// `{label="value",…}` as Prometheus shows it.
    pub labels: String,
    /// (unix seconds, value)
    pub samples: Vec<(f64, f64)>,
}

impl Prometheus {
    /// A client for `config`; the URL must be http(s) with a host.
    pub fn new(config: &PrometheusConfig) -> Result<Prometheus, String> {
        let field = "checks.prometheus.url";
        let mut text = config.url.trim_end_matches('/').to_string();
        text.push('/');
        let base = outbound::api_url(&text, field)?;
        if let Some(t) = &config.token {
            outbound::check_token(t, "checks.prometheus.token")?;
        }
        Ok(Prometheus {
            client: outbound::client(concat!("medic/", env!("CARGO_PKG_VERSION")))?,
            base,
            token: config.token.clone(),
            timeout: Duration::from_millis(config.timeout_ms.max(1)),
        })
    }

    /// Runs `query` over `range` (start, end, step in seconds), or as an
    /// instant query at `at` when `range` is `None`.
    pub async fn query(
        &self,
        query: &str,
        at: f64,
        range: Option<(f64, f64, f64)>,
    ) -> Result<Vec<Series>, StepError> {
        let endpoint = if range.is_some() {
            "query_range"
        } else {
            "query"
        };
        let mut url = outbound::join(&self.base, &["api", "v1", endpoint])?;
        {
            let mut pairs = url.query_pairs_mut();
            pairs.append_pair("query", query);
            match range {
                Some((start, end, step)) => {
                    pairs.append_pair("start", &format!("{start:.3}"));
                    pairs.append_pair("end", &format!("{end:.3}"));
                    pairs.append_pair("step", &format!("{step}"));
                }
                None => {
                    pairs.append_pair("time", &format!("{at:.3}"));
                }
            }
            pairs.append_pair("timeout", &format!("{}ms", self.timeout.as_millis()));
        }
        let mut builder = self.client.get(url).timeout(self.timeout);
        if let Some(t) = &self.token {
            builder = builder.bearer_auth(t);
        }
        let what = format!("Prometheus {endpoint}");
        let (_, body) = outbound::send(builder, &what).await?;
        parse(&body).map_err(|e| StepError::permanent(format!("{what}: {e}")))
    }
}

/// The series of a successful API answer (`vector`, `matrix` or `scalar`).
pub fn parse(body: &[u8]) -> Result<Vec<Series>, String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("the answer is not JSON: {e}"))?;
    if v["status"] != "success" {
        return Err(format!(
            "the answer is not a success: {}",
            outbound::api_message(body)
        ));
    }
    let sample = |pair: &Value| -> Result<(f64, f64), String> {
        let ts = pair[0].as_f64().ok_or("a sample without a timestamp")?;
        let value = pair[1].as_str().ok_or("a sample without a value")?;
        // "NaN", "+Inf", "-Inf" parse; NaN is left out later.
        let value: f64 = value
            .parse()
            .map_err(|_| format!("sample value {value:?} is not a number"))?;
        Ok((ts, value))
    };
    let labels = |m: &Value| -> String {
        let pairs: Vec<String> = m
            .as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| format!("{k}={:?}", v.as_str().unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default();
        format!("{{{}}}", pairs.join(","))
    };
    let data = &v["data"];
    let result = &data["result"];
    match data["resultType"].as_str() {
        Some("vector") => result
            .as_array()
            .ok_or("a vector without a result list")?
            .iter()
            .map(|s| {
                Ok(Series {
                    labels: labels(&s["metric"]),
                    samples: vec![sample(&s["value"])?],
                })
            })
            .collect(),
        Some("matrix") => result
            .as_array()
            .ok_or("a matrix without a result list")?
            .iter()
            .map(|s| {
                Ok(Series {
                    labels: labels(&s["metric"]),
                    samples: s["values"]
                        .as_array()
                        .ok_or("a series without values")?
                        .iter()
                        .map(sample)
                        .collect::<Result<_, _>>()?,
                })
            })
            .collect(),
        Some("scalar") => Ok(vec![Series {
            labels: "scalar".into(),
            samples: vec![sample(result)?],
        }]),
        other => Err(format!(
            "result type {other:?} cannot be compared with a threshold"
        )),
    }
}

/// What the samples say about a threshold.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Every sample holds.
    Holds(String),
    /// A sample does not.
    Fails(String),
    /// No data, or not enough to cover the window.
    NoData(String),
}

/// Judges `series` against `threshold`; with `window` (start, step) the
/// samples must reach back to `start` (within one step).
pub fn judge(series: &[Series], threshold: Threshold, window: Option<(f64, f64)>) -> Verdict {
    let mut earliest = f64::INFINITY;
    let mut seen = 0usize;
    let mut worst: Option<(f64, &str)> = None;
    for s in series {
        for &(ts, v) in &s.samples {
            if v.is_nan() {
                continue;
            }
            seen += 1;
            earliest = earliest.min(ts);
            if !threshold.holds(v) && worst.is_none() {
                worst = Some((v, &s.labels));
            }
        }
    }
    if let Some((v, labels)) = worst {
        return Verdict::Fails(format!("{labels} is {v}, not {threshold}"));
    }
    if seen == 0 {
        return Verdict::NoData("the query returned no data".into());
    }
    if let Some((start, step)) = window {
        if earliest > start + step {
            return Verdict::NoData(format!(
                "data only from {:.0} s after the window's start",
                earliest - start
            ));
        }
    }
    let values: Vec<f64> = series
        .iter()
        .flat_map(|s| s.samples.iter().map(|(_, v)| *v))
        .filter(|v| !v.is_nan())
        .collect();
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    Verdict::Holds(if (max - min).abs() < f64::EPSILON {
        format!("{seen} sample(s) of {} series, all {max}", series.len())
    } else {
        format!(
            "{seen} sample(s) of {} series, {min} to {max}",
            series.len()
        )
    })
}

/// The latest sample of each series, and of those the worst for
/// `threshold` (the highest against `below`, else the lowest): what the
/// check saw last.
pub fn latest(series: &[Series], threshold: Threshold) -> Option<f64> {
    let last = series.iter().filter_map(|s| {
        s.samples
            .iter()
            .rev()
            .map(|(_, v)| *v)
            .find(|v| !v.is_nan())
    });
    if threshold.below.is_some() || threshold.above.is_none() {
        last.reduce(f64::max)
    } else {
        last.reduce(f64::min)
    }
}

/// A query check, built and checked.
pub struct QueryCheck {
    name: String,
    query: Template,
    /// The configured threshold, if any.
    pub threshold: Option<Threshold>,
    for_secs: u64,
    step_secs: u64,
    on_no_data: NoData,
    client: Arc<Prometheus>,
}

/// PromQL as written (`rate(x{service="{service}"}[5m])`) in template
/// syntax: a `{name}` whose name has a slot's shape (lower-case letters,
/// digits, `_`, `.`, `-`) is a slot — an unknown one fails at start — and
/// every other brace is PromQL's own, kept as it is.
fn as_template(query: &str) -> String {
    let slot_shaped = |name: &str| {
        name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    };
    let mut out = String::with_capacity(query.len() + 8);
    let mut rest = query;
    while let Some(c) = rest.chars().next() {
        if c == '{' {
            if let Some(end) = rest[1..].find('}') {
                let name = &rest[1..1 + end];
                if slot_shaped(name) {
                    out.push_str(&rest[..end + 2]);
                    rest = &rest[end + 2..];
                    continue;
                }
            }
            out.push_str("{{");
        } else if c == '}' {
            out.push_str("}}");
        } else {
            out.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// A slot's value in a query: names and ids only.
fn query_value(slot: &Slot, value: &str) -> Result<String, StepError> {
    let ok = !value.is_empty()
        && value.len() <= 253
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'/' | b'-'));
    if ok {
        Ok(value.to_string())
    } else {
        Err(StepError::permanent(format!(
            "{} {} cannot go into a PromQL query (allowed: A-Z a-z 0-9 . _ : / -)",
            slot.name(),
            outbound::shown(value)
        )))
    }
}

impl QueryCheck {
    /// Builds the check `name` from `config`; `field` names it in errors.
    pub fn new(
        name: &str,
        config: &QueryConfig,
        client: Arc<Prometheus>,
        field: &str,
    ) -> Result<QueryCheck, String> {
        if config.query.trim().is_empty() {
            return Err(format!("{field}.query is empty"));
        }
        let query = Template::parse(&as_template(&config.query), &format!("{field}.query"))?;
        let finite = |v: Option<f64>, what: &str| match v {
            Some(n) if !n.is_finite() => Err(format!("{field}.{what} must be a number")),
            _ => Ok(()),
        };
        finite(config.below, "below")?;
        finite(config.above, "above")?;
        let threshold = (config.below.is_some() || config.above.is_some()).then_some(Threshold {
            below: config.below,
            above: config.above,
        });
        Ok(QueryCheck {
            name: name.to_string(),
            query,
            threshold,
            for_secs: config.for_secs,
            step_secs: config
                .step_secs
                .unwrap_or(config.for_secs / 10)
                .clamp(1, config.for_secs.max(1)),
            on_no_data: config.on_no_data,
            client,
        })
    }

    /// Asks Prometheus and judges the answer against `threshold`.
    pub async fn run(&self, request: &StepRequest, threshold: Threshold) -> StepResult {
        let query = self.query.render(request, &query_value)?;
        let now = crate::timefmt::wall_clock() as f64 / 1000.0;
        let (range, window) = if self.for_secs > 0 {
            let (start, step) = (now - self.for_secs as f64, self.step_secs as f64);
            (Some((start, now, step)), Some((start, step)))
        } else {
            (None, None)
        };
        let series = self.client.query(&query, now, range).await?;
        let over = if self.for_secs > 0 {
            format!(" over {} s", self.for_secs)
        } else {
            String::new()
        };
        let name = &self.name;
        let observed = latest(&series, threshold).map(|value| Measured {
            metric: name.clone(),
            value,
        });
        match judge(&series, threshold, window) {
            Verdict::Holds(seen) => Ok(StepDone {
                detail: format!("{name} {threshold}{over}: {seen}"),
                http_status: None,
                observed,
            }),
            Verdict::Fails(why) => Err(StepError {
                observed,
                ..StepError::permanent(format!("{name} not {threshold}{over}: {why}"))
            }),
            Verdict::NoData(why) => match self.on_no_data {
                NoData::Healthy => Ok(StepDone {
                    detail: format!("{name} inconclusive ({why}); on_no_data: healthy"),
                    http_status: None,
                    observed: None,
                }),
                NoData::Unhealthy => Err(StepError::permanent(format!(
                    "{name} inconclusive: {why}; counted as unhealthy (on_no_data)"
                ))),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BELOW_ONE: Threshold = Threshold {
        below: Some(1.0),
        above: None,
    };

    /// Answers as documented in Prometheus' "HTTP API" (querying/api).
    #[test]
    fn answers_of_every_result_type_are_read() {
        let vector = br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"up","job":"prometheus","instance":"localhost:9090"},"value":[1435781451.781,"1"]},{"metric":{"__name__":"up","job":"node","instance":"localhost:9100"},"value":[1435781451.781,"0"]}]}}"#;
        let s = parse(vector).expect("vector");
        assert_eq!(s.len(), 2);
        assert_eq!(s[1].samples, vec![(1435781451.781, 0.0)]);
        assert!(
            s[0].labels.contains("job=\"prometheus\""),
            "{}",
            s[0].labels
        );
        let matrix = br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"up","job":"prometheus","instance":"localhost:9090"},"values":[[1435781430.781,"1"],[1435781445.781,"1"],[1435781460.781,"1"]]}]}}"#;
        assert_eq!(parse(matrix).expect("matrix")[0].samples.len(), 3);
        let scalar = br#"{"status":"success","data":{"resultType":"scalar","result":[1435781451.781,"NaN"]}}"#;
        assert!(parse(scalar).expect("scalar")[0].samples[0].1.is_nan());
        let error = br#"{"status":"error","errorType":"bad_data","error":"1:5: parse error: unexpected <EOF>"}"#;
        assert!(parse(error).expect_err("error").contains("parse error"));
        let string = br#"{"status":"success","data":{"resultType":"string","result":[1,"x"]}}"#;
        assert!(parse(string).is_err());
        assert!(parse(b"<html>").is_err());
    }

    #[test]
    fn the_latest_worst_value_is_what_the_check_measured() {
        let series = |samples: Vec<(f64, f64)>| Series {
            labels: String::new(),
            samples,
        };
        let both = [
            series(vec![(1.0, 9.0), (2.0, 0.5)]),
            series(vec![(1.0, 0.1), (2.0, 0.7), (3.0, f64::NAN)]),
        ];
        let below = Threshold {
            below: Some(1.0),
            above: None,
        };
        let above = Threshold {
            below: None,
            above: Some(0.2),
        };
        assert_eq!(latest(&both, below), Some(0.7), "last samples, the highest");
        assert_eq!(latest(&both, above), Some(0.5), "last samples, the lowest");
        assert_eq!(latest(&[], below), None);
    }

    #[test]
    fn every_sample_must_hold_and_no_data_is_inconclusive() {
        let series = |samples: Vec<(f64, f64)>| Series {
            labels: "{service=\"checkout\"}".into(),
            samples,
        };
        assert!(matches!(
            judge(&[series(vec![(100.0, 0.2)])], BELOW_ONE, None),
            Verdict::Holds(_)
        ));
        let Verdict::Fails(why) = judge(
            &[series(vec![(100.0, 0.2)]), series(vec![(100.0, 7.5)])],
            BELOW_ONE,
            None,
        ) else {
            panic!("7.5 is not below 1")
        };
        assert!(why.contains("is 7.5, not below 1"), "{why}");
        assert!(matches!(judge(&[], BELOW_ONE, None), Verdict::NoData(_)));
        assert!(matches!(
            judge(&[series(vec![(100.0, f64::NAN)])], BELOW_ONE, None),
            Verdict::NoData(_)
        ));
        // A window of 60 s from t=40 at a 6 s step: data from t=90 does not cover it.
        let late = series(vec![(90.0, 0.1), (100.0, 0.1)]);
        assert!(matches!(
            judge(&[late], BELOW_ONE, Some((40.0, 6.0))),
            Verdict::NoData(_)
        ));
        let covering = series(vec![(42.0, 0.1), (100.0, 0.3)]);
        assert!(matches!(
            judge(&[covering], BELOW_ONE, Some((40.0, 6.0))),
            Verdict::Holds(_)
        ));
        let between = Threshold {
            below: Some(10.0),
            above: Some(2.0),
        };
        assert!(matches!(
            judge(&[series(vec![(1.0, 2.0)])], between, None),
            Verdict::Fails(_)
        ));
    }

    #[test]
    fn promql_braces_stay_and_slots_are_slots() {
        assert_eq!(
            as_template(r#"sum(rate(x{service="{service}",code=~"5.."}[5m])) > {param.min}"#),
            r#"sum(rate(x{{service="{service}",code=~"5.."}}[5m])) > {param.min}"#
        );
        assert_eq!(as_template("up{}"), "up{{}}");
        assert_eq!(
            as_template("up{nope}"),
            "up{nope}",
            "an unknown slot fails at start"
        );
        assert_eq!(as_template("a}{"), "a}}{{");
    }

    #[test]
    fn only_names_and_ids_go_into_a_query() {
        for ok in ["checkout", "payments-api", "eu-west-1.prod", "team/app:v2"] {
            assert_eq!(query_value(&Slot::Service, ok).expect(ok), ok);
        }
        for bad in ["a\"}) or vector(1", "x\\", "a b", "", "{}", "é"] {
            assert!(query_value(&Slot::Service, bad).is_err(), "{bad}");
        }
    }
}
