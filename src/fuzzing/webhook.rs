//! The `webhook` target: a CI/CD platform's webhook through normalization.

use super::*;

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
