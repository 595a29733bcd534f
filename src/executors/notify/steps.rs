//! The `channels` step executor: a recovery's `escalate` and `notify` steps
//! delivered on notification channels, so that an escalation reaches a
//! person (a PagerDuty or Opsgenie page, a Slack message, an e-mail) instead
//! of being recorded only.
//!
//! `orchestrate.executors.channels` maps each action to the channels that
//! carry it (`escalate: [oncall, ops-slack]`); every name must be one of
//! `notify.channels`, checked at start. A step succeeds when at least one
//! channel delivered it; the detail names each channel's result.

use super::Channels;
use crate::executors::step::{StepDone, StepError, StepExecutor, StepRequest, StepResult};
use crate::executors::BoxFuture;
use crate::stages::notify::{usable_link, About, Message, MessageKind};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Carries `escalate` and `notify` steps on notification channels.
pub struct ChannelSteps {
    channels: Arc<Channels>,
    routes: BTreeMap<String, Vec<String>>,
}

impl ChannelSteps {
    /// Routes each action of `routes` to its channels, all of which must be
    /// configured in `channels`.
    pub fn new(
        channels: Arc<Channels>,
        routes: &BTreeMap<String, Vec<String>>,
    ) -> Result<ChannelSteps, String> {
        if routes.is_empty() {
            return Err("maps no action to channels (escalate: [oncall])".into());
        }
        for (action, names) in routes {
            if !matches!(action.as_str(), "escalate" | "notify") {
                return Err(format!(
                    "{action}: only escalate and notify steps go to notification channels"
                ));
            }
            if names.is_empty() {
                return Err(format!("{action} lists no channel"));
            }
            if let Some(missing) = names.iter().find(|n| !channels.has(n)) {
                return Err(format!(
                    "{action}: channel {missing:?} is not one of notify.channels"
                ));
            }
        }
        Ok(ChannelSteps {
            channels,
            routes: routes.clone(),
        })
    }

    /// What the step tells people.
    fn message(request: &StepRequest) -> Result<Message, StepError> {
        let context = request.context.as_ref().ok_or_else(|| {
            StepError::permanent("the step carries no failure context to tell anyone about")
        })?;
        let param = |name: &str| request.params.get(name).map(String::as_str);
        let (kind, text) = match request.action.as_str() {
            "escalate" => {
                let team = param("team").unwrap_or("on-call");
                let page = if param("page") == Some("true") {
                    " (page)"
                } else {
                    ""
                };
                (
                    MessageKind::Escalation,
                    format!(
                        "medic hands the recovery of {} to {team}{page}: its {} tree could not finish on its own",
                        request.deployment_key, context.strategy
                    ),
                )
            }
            _ => (
                MessageKind::Update,
                param("message")
                    .unwrap_or("recovery in progress")
                    .to_string(),
            ),
        };
        Ok(Message {
            kind,
            text,
            about: Some(About {
                recovery_id: request.recovery_id.clone(),
                deployment_key: request.deployment_key.clone(),
                service: request.service.clone(),
                environment: request.environment.clone(),
                failure_type: context.failure_type,
                severity: context.severity,
                strategy: context.strategy.clone(),
                phase: None,
                outcome: None,
                dry_run: false,
                link: usable_link(request.ci.as_ref().and_then(|c| c.url.as_deref())),
                approval_command: None,
            }),
            digest: Vec::new(),
            held: 0,
        })
    }
}

impl StepExecutor for ChannelSteps {
    fn kind(&self) -> &'static str {
        "channels"
    }

    fn supports(&self, action: &str) -> bool {
        self.routes.contains_key(action)
    }

    fn run<'a>(&'a self, request: &'a StepRequest) -> BoxFuture<'a, StepResult> {
        Box::pin(async move {
            let names = self.routes.get(&request.action).ok_or_else(|| {
                StepError::permanent(format!("no channels for {}", request.action))
            })?;
            let message = Self::message(request)?;
            let mut delivered = Vec::new();
            let mut failed = Vec::new();
            for name in names {
                // One delivery per step and channel, the same after a restart.
                let key = format!("{}/{name}", request.idempotency_key);
                let result = self.channels.deliver(name, &key, &message).await;
                if result.success {
                    delivered.push(format!("{name}: {}", result.detail));
                } else {
                    failed.push(format!("{name}: {}", result.detail));
                }
            }
            if delivered.is_empty() {
                return Err(StepError::transient(format!(
                    "no channel delivered the {}: {}",
                    request.action,
                    failed.join("; ")
                )));
            }
            let mut detail = format!("delivered on {}", delivered.join("; "));
            if !failed.is_empty() {
                detail.push_str(&format!("; failed on {}", failed.join("; ")));
            }
            Ok(StepDone {
                detail,
                http_status: None,
                observed: None,
            })
        })
    }
}
