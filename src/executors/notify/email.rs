//! E-mail sink: one plain-text message per notification over SMTP.
//!
//! The connection uses STARTTLS by default (required, not opportunistic),
//! implicit TLS, or plain text for a relay on the same host. The
//! `Message-ID` is derived from the notification id, so a message resent
//! after a restart can be recognised as the same one.

use super::Sink;
use crate::executors::step::{StepDone, StepError, StepResult};
use crate::executors::BoxFuture;
use crate::stages::notify::config::{SmtpConfig, SmtpTls};
use crate::stages::notify::Message;
use lettre::message::{header::ContentType, Mailbox};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// Sends each notification as an e-mail.
pub struct EmailSink {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
}

impl EmailSink {
    /// A sink sending from `from` to `to` through `smtp`; each SMTP exchange
    /// is bounded by `timeout`.
    pub fn new(
        smtp: &SmtpConfig,
        from: &str,
        to: &[String],
        timeout: Duration,
    ) -> Result<EmailSink, String> {
        let mailbox = |a: &str| {
            a.parse::<Mailbox>()
                .map_err(|e| format!("'{a}' is not an e-mail address: {e}"))
        };
        let builder = match smtp.tls {
            SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host),
            SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host),
            SmtpTls::None => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(
                &smtp.host,
            )),
        }
        .map_err(|e| format!("smtp.host {}: {e}", smtp.host))?;
        let default_port = match smtp.tls {
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
            SmtpTls::None => 25,
        };
        let mut builder = builder
            .port(smtp.port.unwrap_or(default_port))
            .timeout(Some(timeout));
        if let (Some(user), Some(password)) = (&smtp.username, &smtp.password) {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        Ok(EmailSink {
            transport: builder.build(),
            from: mailbox(from)?,
            to: to.iter().map(|a| mailbox(a)).collect::<Result<_, _>>()?,
        })
    }
}

impl Sink for EmailSink {
    fn kind(&self) -> &'static str {
        "email"
    }

    fn send<'a>(&'a self, key: &'a str, message: &'a Message) -> BoxFuture<'a, StepResult> {
        Box::pin(async move {
            let mut mail = lettre::Message::builder()
                .from(self.from.clone())
                .subject(subject(message))
                .message_id(Some(message_id(key)))
                .header(ContentType::TEXT_PLAIN);
            for to in &self.to {
                mail = mail.to(to.clone());
            }
            let mail = mail
                .body(body(message))
                .map_err(|e| StepError::permanent(format!("cannot build the e-mail: {e}")))?;
            match self.transport.send(mail).await {
                Ok(response) => Ok(StepDone {
                    detail: format!("SMTP {}", response.code()),
                    http_status: None,
                    observed: None,
                }),
                Err(e) if e.is_permanent() => Err(StepError::permanent(format!("SMTP: {e}"))),
                Err(e) => Err(StepError::transient(format!("SMTP: {e}"))),
            }
        })
    }
}

/// The subject: the message's title on one line.
pub fn subject(message: &Message) -> String {
    let title: String = message
        .title()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    format!("[medic] {}", title.trim_start_matches("medic: "))
}

/// The plain-text body.
pub fn body(message: &Message) -> String {
    let mut out = format!("{}\n", message.text);
    if let Some(a) = &message.about {
        out.push('\n');
        let mut line = |name: &str, value: &str| out.push_str(&format!("{name:<14}{value}\n"));
        line("Deployment:", &a.deployment_key);
        line("Failure:", &format!("{} ({})", a.failure_type, a.severity));
        line("Strategy:", &a.strategy);
        line("Phase:", a.phase.map_or("-", |p| p.as_str()));
        if let Some(outcome) = a.outcome {
            line(
                "Outcome:",
                &format!("{outcome}{}", if a.dry_run { " (dry run)" } else { "" }),
            );
        }
        if let Some(link) = &a.link {
            line("Link:", link);
        }
        line("Recovery:", &a.recovery_id);
        if let Some(command) = &a.approval_command {
            out.push_str(&format!(
                "\nApprove with:\n    {command}\nReject with:\n    {command} --reject\n"
            ));
        }
    }
    if !message.digest.is_empty() {
        out.push('\n');
        for line in &message.digest {
            out.push_str(&format!("- {line}\n"));
        }
    }
    out
}

/// `<hash@medic>`: the same notification always gets the same id.
fn message_id(key: &str) -> String {
    let hash = Sha256::digest(key.as_bytes());
    let hex: String = hash.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("<{hex}@medic>")
}
