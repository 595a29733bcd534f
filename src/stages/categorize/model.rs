//! The learned second opinion: a linear text classifier (multinomial
//! logistic regression over word unigrams and bigrams) trained on the train
//! split of the development corpus.
//!
//! Why our own few hundred lines and not a crate: the model is a sparse dot
//! product at run time and a deterministic full-batch gradient descent at
//! training time; `linfa-logistic` would bring ndarray and a BLAS-free dense
//! solver for the same result, and its training is not bit-reproducible
//! across versions. Reproducibility matters here: the shipped model file
//! (`model.tsv`) is rebuilt by `cargo run --release --example train_model`,
//! and a test retrains it and checks it is identical.
//!
//! Features: lower-cased tokens (letters, digits, `_`, inner `.`), any token
//! with a digit masked as `<n>`, adjacent pairs, and the character 5-grams
//! inside each word (`#^conn`, `#refus`, see [`CHAR_GRAM`]); each feature's value is
//! `1 + ln(count)`, the vector scaled to unit length. The categorize stage
//! keeps a window's feature counts ([`CorrelationWindow::model_features`])
//! and asks the model only when the rules found no cause.
//!
//! [`CorrelationWindow::model_features`]: crate::domain::CorrelationWindow

use crate::domain::FailureType;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

/// The model compiled into medic, built from `tests/data/corpus/train.jsonl`.
pub const DEFAULT_MODEL: &str = include_str!("model.tsv");

/// First line of a model file.
const HEADER: &str = "medic-linear-model v1";

/// Number of classes: the ten failure types, in [`FailureType::ALL`] order.
const CLASSES: usize = 10;

/// A trained model: a weight row per known feature, and a bias.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// Each known feature with its weight row, sorted by name.
    features: Vec<(String, [f32; CLASSES])>,
    /// Each feature's place in `features`, keyed by [`feature_hash`]: a
    /// lookup compares no strings.
    index: HashMap<u64, u32, BuildHasherDefault<Prehashed>>,
    bias: [f32; CLASSES],
}

/// A 64-bit hash of a feature; two of the model's features never share one
/// (checked when a model is built), and a line's unknown feature meets a
/// known one's hash with odds of about 2^-49 per lookup.
fn feature_hash(feature: &str) -> u64 {
    static STATE: foldhash::fast::FixedState =
        foldhash::fast::FixedState::with_seed(0x006d_6564_6963);
    STATE.hash_one(feature)
}

/// The identity hasher for keys that are already hashes.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed; fold anything else in case.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl Model {
    /// A model of `features` (in any order) and `bias`; refused when two
    /// features have one name or one hash.
    fn new(
        features: impl IntoIterator<Item = (String, [f32; CLASSES])>,
        bias: [f32; CLASSES],
    ) -> Result<Model, String> {
        let mut features: Vec<(String, [f32; CLASSES])> = features.into_iter().collect();
        features.sort_by(|a, b| a.0.cmp(&b.0));
        let index: HashMap<u64, u32, BuildHasherDefault<Prehashed>> = features
            .iter()
            .zip(0u32..)
            .map(|((f, _), i)| (feature_hash(f), i))
            .collect();
        if index.len() != features.len() {
            return Err("two features share a name or a hash".into());
        }
        Ok(Model {
            features,
            index,
            bias,
        })
    }

    /// Where `feature` is in `features`.
    fn place(&self, feature: &str) -> Option<u32> {
        self.index.get(&feature_hash(feature)).copied()
    }

    fn row(&self, feature: &str) -> Option<&[f32; CLASSES]> {
        self.place(feature).map(|i| &self.features[i as usize].1)
    }
}

/// The model's verdict on a text.
#[derive(Debug, Clone, PartialEq)]
pub struct Opinion {
    /// The most probable type.
    pub failure_type: FailureType,
    /// Its probability.
    pub probability: f64,
    /// The features that weighed most for it, heaviest first.
    pub top_features: Vec<String>,
}

/// Training settings; the defaults build the shipped model.
#[derive(Debug, Clone, Copy)]
pub struct Training {
    /// Features seen in fewer items are left out.
    pub min_items: usize,
    /// L2 penalty on the weights.
    pub l2: f64,
    /// Gradient-descent step.
    pub step: f64,
    /// Full passes over the data.
    pub epochs: usize,
}

impl Default for Training {
    fn default() -> Self {
        Training {
            min_items: 2,
            l2: 3e-5,
            step: 24.0,
            epochs: 500,
        }
    }
}

/// Calls `feature` with every unigram and bigram of `line`: lower-cased
/// tokens (letters, digits, `_`, inner `.`), a token with a digit masked as
/// `<n>`, and each adjacent pair joined by a space. The text passed lives only
/// for the call, so a caller that keeps few features allocates for those only.
fn for_each_feature(line: &str, mut feature: impl FnMut(&str)) {
    let mut previous = String::new();
    let mut token = String::new();
    let mut pair = String::new();
    let mut framed = String::new();
    let mut gram = String::new();
    let words = line
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .map(|t| t.trim_matches('.'))
        .filter(|t| !t.is_empty());
    for word in words {
        token.clear();
        let masked = word.bytes().any(|b| b.is_ascii_digit());
        if masked {
            token.push_str("<n>");
        } else {
            token.extend(word.chars().map(|c| c.to_ascii_lowercase()));
        }
        if !previous.is_empty() {
            pair.clear();
            pair.push_str(&previous);
            pair.push(' ');
            pair.push_str(&token);
            feature(&pair);
        }
        feature(&token);
        if !masked && token.len() + 2 > CHAR_GRAM + 1 {
            // Tokens are ASCII (split above), so byte windows are characters.
            framed.clear();
            framed.push('^');
            framed.push_str(&token);
            framed.push('$');
            for start in 0..=framed.len() - CHAR_GRAM {
                gram.clear();
                gram.push('#');
                gram.push_str(&framed[start..start + CHAR_GRAM]);
                feature(&gram);
            }
        }
        std::mem::swap(&mut previous, &mut token);
    }
}

/// Length of the character n-grams taken inside each word (with `^` and `$`
/// marking its ends, words of five characters or more): they let the model
/// recognise a word it has not seen whole (`ECONNREFUSED` next to
/// `connrefused`). Chosen on train by 5-fold cross-validation by project
/// (`train_model -- --cv`): the model alone reaches accuracy 0.772 with
/// 3-grams, 0.790 with 4-grams, 0.804 with 5-grams, against 0.780 with words
/// only; with each fold's own rules disabled (`--cv-ablate`) rules and model
/// reach 0.872 with 5-grams, 0.871 with 6-grams, 0.867 with words only.
pub const CHAR_GRAM: usize = 5;

/// Adds the unigram and bigram counts of `line` to `counts`.
pub fn count_features(line: &str, counts: &mut BTreeMap<String, f64>) {
    for_each_feature(line, |f| *counts.entry(f.to_string()).or_insert(0.0) += 1.0);
}

/// Adds to `counts` the unigrams and bigrams of `line` that `model` knows,
/// growing `counts` to at most `limit` distinct features: what
/// [`count_features`] counts, less the features the model would ignore, and
/// without allocating for them (the categorize stage calls this per line).
pub fn count_known_features(
    model: &Model,
    line: &str,
    counts: &mut BTreeMap<String, f64>,
    limit: usize,
) {
    for_each_feature(line, |f| {
        if model.row(f).is_none() {
            return;
        }
        let room = counts.len() < limit;
        match counts.get_mut(f) {
            Some(c) => *c += 1.0,
            None if room => {
                counts.insert(f.to_string(), 1.0);
            }
            None => {}
        }
    });
}

/// The feature counts of a whole text, line by line.
pub fn text_features(text: &str) -> BTreeMap<String, f64> {
    let mut counts = BTreeMap::new();
    for line in text.lines() {
        count_features(line, &mut counts);
    }
    counts
}

/// `(feature, value)` for the features in `known`, unit length.
fn vector(counts: &BTreeMap<String, f64>, known: impl Fn(&str) -> bool) -> Vec<(&str, f64)> {
    let mut v: Vec<(&str, f64)> = counts
        .iter()
        .filter(|(f, c)| **c > 0.0 && known(f))
        .map(|(f, c)| (f.as_str(), 1.0 + c.ln()))
        .collect();
    let norm = v.iter().map(|(_, x)| x * x).sum::<f64>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|(_, x)| *x /= norm);
    }
    v
}

fn softmax(logits: &mut [f64; CLASSES]) {
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut sum = 0.0;
    for l in logits.iter_mut() {
        *l = (*l - max).exp();
        sum += *l;
    }
    logits.iter_mut().for_each(|l| *l /= sum);
}

impl Model {
    /// The model compiled into medic.
    pub fn default_model() -> Model {
        // Compiled-in; `tests/corpus_quality.rs` parses it on every run.
        Model::parse(DEFAULT_MODEL).unwrap_or_else(|e| panic!("the default model is invalid: {e}"))
    }

    /// Features the model knows.
    pub fn len(&self) -> usize {
        self.features.len()
    }

    /// True when the model knows no feature.
    pub fn is_empty(&self) -> bool {
        self.features.is_empty()
    }

    /// The model's opinion of a text given as feature counts, or `None` when
    /// it knows none of the features.
    pub fn opinion(&self, counts: &BTreeMap<String, f64>) -> Option<Opinion> {
        let v: Vec<(&str, &[f32; CLASSES], f64)> = vector(counts, |f| self.row(f).is_some())
            .into_iter()
            .filter_map(|(f, x)| Some((f, self.row(f)?, x)))
            .collect();
        if v.is_empty() {
            return None;
        }
        let (best, probability) = self.best(v.iter().map(|(_, row, x)| (*row, *x)));
        let mut weighed: Vec<(&str, f64)> = v
            .iter()
            .map(|(f, row, x)| (*f, f64::from(row[best]) * x))
            .filter(|(_, c)| *c > 0.0)
            .collect();
        weighed.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
        Some(Opinion {
            failure_type: FailureType::ALL[best],
            probability,
            top_features: weighed.iter().take(5).map(|(f, _)| f.to_string()).collect(),
        })
    }

    /// The most probable type of `text` and its probability, as
    /// [`Model::opinion`] of the text's feature counts would give them, without
    /// keeping the counts or the weightiest features: one lookup per feature,
    /// no allocation beyond one list of places. The categorize stage asks
    /// this of a line outside any window that an `opens: model` rule matched.
    pub fn verdict_of(&self, text: &str) -> Option<(FailureType, f64)> {
        let mut places: Vec<u32> = Vec::new();
        for line in text.lines() {
            for_each_feature(line, |f| places.extend(self.place(f)));
        }
        if places.is_empty() {
            return None;
        }
        // The same feature found twice is one feature counted twice.
        places.sort_unstable();
        let mut weighted: Vec<(u32, f64)> = Vec::with_capacity(places.len());
        for place in places {
            match weighted.last_mut() {
                Some((last, count)) if *last == place => *count += 1.0,
                _ => weighted.push((place, 1.0)),
            }
        }
        weighted.iter_mut().for_each(|(_, c)| *c = 1.0 + c.ln());
        let norm = weighted.iter().map(|(_, x)| x * x).sum::<f64>().sqrt();
        let (best, probability) = self.best(
            weighted
                .iter()
                .map(|(i, x)| (&self.features[*i as usize].1, x / norm)),
        );
        Some((FailureType::ALL[best], probability))
    }

    /// The most probable class of a weighted sum of rows, and its probability.
    fn best<'r>(&self, rows: impl Iterator<Item = (&'r [f32; CLASSES], f64)>) -> (usize, f64) {
        let mut logits = self.bias.map(f64::from);
        for (row, x) in rows {
            for (l, w) in logits.iter_mut().zip(row) {
                *l += f64::from(*w) * x;
            }
        }
        softmax(&mut logits);
        logits
            .iter()
            .copied()
            .enumerate()
            .fold((0, f64::MIN), |a, (i, p)| if p > a.1 { (i, p) } else { a })
    }

    /// Trains a model on `(text, type)` items, deterministically: the same
    /// items and settings give the same model, bit for bit.
    pub fn train(items: &[(&str, FailureType)], settings: Training) -> Model {
        let counted: Vec<(BTreeMap<String, f64>, usize)> = items
            .iter()
            .map(|(text, t)| {
                let class = FailureType::ALL.iter().position(|x| x == t).unwrap_or(0);
                (text_features(text), class)
            })
            .collect();
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for (counts, _) in &counted {
            for f in counts.keys() {
                *seen.entry(f.as_str()).or_insert(0) += 1;
            }
        }
        let vocab: BTreeMap<&str, usize> = seen
            .into_iter()
            .filter(|(_, n)| *n >= settings.min_items)
            .enumerate()
            .map(|(i, (f, _))| (f, i))
            .collect();
        let data: Vec<(Vec<(usize, f64)>, usize)> = counted
            .iter()
            .map(|(counts, class)| {
                let v = vector(counts, |f| vocab.contains_key(f));
                (v.into_iter().map(|(f, x)| (vocab[f], x)).collect(), *class)
            })
            .collect();
        // Classes weighed by inverse frequency, so that macro-F1, not the
        // majority type, is what the loss rewards.
        let mut per_class = [0usize; CLASSES];
        data.iter().for_each(|(_, c)| per_class[*c] += 1);
        let n = data.len().max(1) as f64;
        let class_weight = per_class.map(|k| {
            if k == 0 {
                0.0
            } else {
                n / (CLASSES as f64 * k as f64)
            }
        });
        let mut weights = vec![[0.0f64; CLASSES]; vocab.len()];
        let mut bias = [0.0f64; CLASSES];
        for _ in 0..settings.epochs {
            let mut grad = vec![[0.0f64; CLASSES]; vocab.len()];
            let mut grad_bias = [0.0f64; CLASSES];
            for (v, class) in &data {
                let mut p = bias;
                for (f, x) in v {
                    for (l, w) in p.iter_mut().zip(&weights[*f]) {
                        *l += w * x;
                    }
                }
                softmax(&mut p);
                let cw = class_weight[*class];
                for (k, pk) in p.iter_mut().enumerate() {
                    *pk = cw * (*pk - if k == *class { 1.0 } else { 0.0 });
                }
                for (f, x) in v {
                    for (g, d) in grad[*f].iter_mut().zip(&p) {
                        *g += d * x;
                    }
                }
                for (g, d) in grad_bias.iter_mut().zip(&p) {
                    *g += d;
                }
            }
            for (row, g) in weights.iter_mut().zip(&grad) {
                for (w, gk) in row.iter_mut().zip(g) {
                    *w -= settings.step * (gk / n + settings.l2 * *w);
                }
            }
            for (b, g) in bias.iter_mut().zip(&grad_bias) {
                *b -= settings.step * g / n;
            }
        }
        // Stored at 4 decimals; rows that round to zero carry nothing.
        let round = |w: f64| ((w * 1e4).round() / 1e4) as f32;
        Model::new(
            vocab
                .iter()
                .map(|(f, i)| (f.to_string(), weights[*i].map(round)))
                .filter(|(_, row)| row.iter().any(|w| *w != 0.0)),
            bias.map(round),
        )
        .unwrap_or_else(|e| panic!("the trained model cannot be indexed: {e}"))
    }

    /// The model as text: a header, the classes, the bias, then one line per
    /// feature in sorted order (`feature<TAB>w1 … w10`).
    pub fn to_text(&self) -> String {
        let row = |r: &[f32; CLASSES]| r.map(|w| format!("{w:.4}")).join(" ");
        let classes: Vec<&str> = FailureType::ALL.iter().map(|t| t.as_str()).collect();
        let mut out = format!(
            "{HEADER}\nclasses\t{}\nbias\t{}\n",
            classes.join(" "),
            row(&self.bias)
        );
        for (f, r) in &self.features {
            out.push_str(&format!("{f}\t{}\n", row(r)));
        }
        out
    }

    /// Reads a model written by [`to_text`](Model::to_text).
    pub fn parse(text: &str) -> Result<Model, String> {
        let mut lines = text.lines().enumerate();
        if lines.next().map(|(_, l)| l) != Some(HEADER) {
            return Err(format!("line 1: expected {HEADER:?}"));
        }
        let row = |n: usize, s: &str| -> Result<[f32; CLASSES], String> {
            let values: Vec<f32> = s
                .split(' ')
                .map(str::parse)
                .collect::<Result<_, _>>()
                .map_err(|e| format!("line {}: {e}", n + 1))?;
            values
                .try_into()
                .map_err(|_| format!("line {}: expected {CLASSES} weights", n + 1))
        };
        let classes: Vec<&str> = FailureType::ALL.iter().map(|t| t.as_str()).collect();
        let mut field = |name: &str| -> Result<(usize, &str), String> {
            match lines.next() {
                Some((n, line)) => match line.split_once('\t') {
                    Some((k, rest)) if k == name => Ok((n, rest)),
                    _ => Err(format!("line {}: expected the {name} line", n + 1)),
                },
                None => Err(format!("no {name} line")),
            }
        };
        let (n, listed) = field("classes")?;
        if !listed.split(' ').eq(classes.iter().copied()) {
            return Err(format!("line {}: classes are not medic's ten types", n + 1));
        }
        let (n, bias) = field("bias")?;
        let bias = row(n, bias)?;
        let mut features = Vec::new();
        for (n, line) in lines {
            let (name, rest) = line
                .split_once('\t')
                .ok_or_else(|| format!("line {}: expected name<TAB>values", n + 1))?;
            features.push((name.to_string(), row(n, rest)?));
        }
        Model::new(features, bias)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use FailureType::*;

    #[test]
    fn features_are_masked_unigrams_and_bigrams() {
        let f = text_features("Connection refused to 10.0.0.1:5432\nconnection refused");
        assert_eq!(f["connection"], 2.0);
        assert_eq!(f["connection refused"], 2.0);
        assert_eq!(f["<n>"], 2.0, "the address and the port are masked");
        // Character 5-grams of each word of five characters or more, with
        // its ends marked; none of a masked token.
        assert_eq!(f["#^refu"], 2.0);
        assert_eq!(f["#used$"], 2.0);
        assert!(!f.keys().any(|k| k.starts_with("#^<n>")));
        assert!(
            !f.contains_key("refused connection"),
            "no pairs across lines"
        );
    }

    #[test]
    fn a_trained_model_separates_its_classes_and_round_trips_as_text() {
        let items = [
            ("dial tcp: connection refused", Network),
            ("connect: connection refused by peer", Network),
            ("no space left on device", Resource),
            ("write failed: no space left", Resource),
        ];
        let model = Model::train(
            &items,
            Training {
                min_items: 1,
                ..Training::default()
            },
        );
        let opinion = model
            .opinion(&text_features("upstream connection refused"))
            .expect("knows the words");
        assert_eq!(opinion.failure_type, Network);
        assert!(opinion.probability > 0.5, "{opinion:?}");
        assert!(
            opinion
                .top_features
                .iter()
                .any(|f| f.contains("conn") || f.contains("refus")),
            "{opinion:?}"
        );
        assert!(model.opinion(&text_features("zzz qqq")).is_none());
        // The per-line verdict is the opinion of the text's counts.
        for text in [
            "upstream connection refused",
            "disk: no space left, no space",
            "zzz",
        ] {
            assert_eq!(
                model.verdict_of(text),
                model
                    .opinion(&text_features(text))
                    .map(|o| (o.failure_type, o.probability)),
                "{text}"
            );
        }
        assert_eq!(Model::parse(&model.to_text()).expect("parses"), model);
        assert!(Model::parse("nonsense").is_err());
    }
}
