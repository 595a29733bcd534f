//! The `offline_line` target: `medic categorize` on one line of any shipper format.

use super::*;

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
