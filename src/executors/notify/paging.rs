//! What the PagerDuty and Opsgenie sinks share: what a message does to the
//! deployment's alert and the key the alert is known by.
//!
//! | message | alert |
//! |---|---|
//! | approval needed, a failed or escalated outcome, an `escalate` step, a digest | open (or add to it) |
//! | outcome rejected | acknowledge: a person has it |
//! | outcome succeeded | resolve |
//! | outcome skipped (attached, cooldown), a `notify` step | nothing: no person is needed |
//!
//! The key is the deployment's (`medic/checkout/production`): every page
//! about one deployment is one alert, a second failure while it is open
//! adds to it instead of paging again, and the recovery that finally
//! succeeds resolves it — with no memory in medic that a restart could lose.

use crate::domain::Outcome;
use crate::stages::notify::{Message, MessageKind};

/// What a message does to its alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// Open the alert, or add to the open one.
    Open,
    /// A person has it.
    Acknowledge,
    /// It is over.
    Resolve,
}

/// What `message` does to its alert; `None` when nobody needs to hear it.
pub fn page(message: &Message) -> Option<Page> {
    let Some(about) = &message.about else {
        return Some(Page::Open);
    };
    match (message.kind, about.outcome) {
        (MessageKind::Outcome, Some(Outcome::Succeeded)) => Some(Page::Resolve),
        (MessageKind::Outcome, Some(Outcome::Rejected)) => Some(Page::Acknowledge),
        (MessageKind::Outcome, Some(Outcome::Skipped)) | (MessageKind::Update, _) => None,
        _ => Some(Page::Open),
    }
}

/// The key of `message`'s alert: the deployment's, or one for digests.
pub fn alert_key(message: &Message) -> String {
    match &message.about {
        Some(about) => format!("medic/{}", about.deployment_key),
        None => "medic/digest".into(),
    }
}
