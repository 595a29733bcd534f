//! The command step executor: runs one configured program per action, for
//! deploy tools that are command-line programs (`kubectl`, `helm`, scripts).
//!
//! There is never a shell: the program gets its arguments as a vector, so no
//! value is ever parsed as shell syntax. Arguments may name a few values of
//! the step in `{slot}`s, and only values that look like names are let
//! through (`[A-Za-z0-9._/-]`, 1–200 characters, no `..`, not starting with
//! `-` so that no value can become an option). Parameters, CI fields and
//! anything else from logs or payloads are not available to commands.
//!
//! The program starts with an empty environment plus the variables named in
//! `inherit_env`, the configured `env`, and `MEDIC_IDEMPOTENCY_KEY`; stdin is
//! closed; the process is killed when the attempt times out. Exit status 0 is
//! success; anything else is a permanent failure with the tail of stderr.

use super::outbound::{clean_tail, shown};
use super::step::{StepDone, StepError, StepExecutor, StepRequest, StepResult};
use super::template::{Slot, Template};
use super::BoxFuture;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Bytes of stdout and stderr kept while the program runs (the end of each).
const KEEP: usize = 4096;
/// Bytes of output shown in the audit trail.
const SHOWN: usize = 200;
/// How long output is still read after the program exited.
const OUTPUT_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

/// Configuration of the command executor.
#[derive(Debug, Clone, PartialEq, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandConfig {
    /// Command per action; the executor supports exactly these actions.
    #[serde(default)]
    pub actions: BTreeMap<String, CommandActionConfig>,
}

fn default_inherit_env() -> Vec<String> {
    vec!["PATH".into(), "HOME".into()]
}

/// One action's command.
#[derive(Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandActionConfig {
    /// Program and arguments. The first element is the absolute path of the
    /// program (no slots); later elements may hold `{service}`,
    /// `{environment}`, `{deployment_key}`, `{recovery_id}`,
    /// `{idempotency_key}` and `{action}`.
    pub argv: Vec<String>,
    /// Environment variables set for the program (literal values).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Variables passed on from medic's own environment; `[PATH, HOME]` by
    /// default. Everything else (tokens included) is withheld.
    #[serde(default = "default_inherit_env")]
    pub inherit_env: Vec<String>,
    /// Absolute working directory; medic's own when unset.
    #[serde(default)]
    pub working_dir: Option<PathBuf>,
}

impl std::fmt::Debug for CommandActionConfig {
    /// Environment values may be credentials: only names are shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandActionConfig")
            .field("argv", &self.argv)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("inherit_env", &self.inherit_env)
            .field("working_dir", &self.working_dir)
            .finish()
    }
}

/// One action's command, checked.
#[derive(Debug, Clone)]
struct Compiled {
    program: PathBuf,
    args: Vec<Template>,
    env: BTreeMap<String, String>,
    inherit_env: Vec<String>,
    working_dir: Option<PathBuf>,
}

fn valid_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn compile(action: &str, config: &CommandActionConfig) -> Result<Compiled, String> {
    let field = format!("command.actions.{action}");
    let Some((program, args)) = config.argv.split_first() else {
        return Err(format!("{field}.argv is empty"));
    };
    if program.contains(['{', '}']) {
        return Err(format!(
            "{field}.argv[0]: the program cannot come from a slot"
        ));
    }
    if !Path::new(program).is_absolute() {
        return Err(format!(
            "{field}.argv[0]: the program must be an absolute path, not '{program}'"
        ));
    }
    if config.argv.iter().any(|a| a.contains('\0')) {
        return Err(format!("{field}.argv: arguments cannot contain NUL"));
    }
    let args = args
        .iter()
        .enumerate()
        .map(|(i, arg)| {
            let field = format!("{field}.argv[{}]", i + 1);
            let template = Template::parse(arg, &field)?;
            if let Some(slot) = template.slots().find(|s| !allowed(s)) {
                return Err(format!(
                    "{field}: {{{}}} is not allowed in a command (allowed: service, \
                     environment, deployment_key, recovery_id, idempotency_key, action)",
                    slot.name()
                ));
            }
            Ok(template)
        })
        .collect::<Result<_, String>>()?;
    for (name, value) in &config.env {
        if !valid_env_name(name) || name == "MEDIC_IDEMPOTENCY_KEY" {
            return Err(format!("{field}.env.{name}: not a name medic can set"));
        }
        if value.contains('\0') {
            return Err(format!("{field}.env.{name}: values cannot contain NUL"));
        }
    }
    if let Some(name) = config.inherit_env.iter().find(|n| !valid_env_name(n)) {
        return Err(format!(
            "{field}.inherit_env: '{name}' is not a variable name"
        ));
    }
    if let Some(dir) = &config.working_dir {
        if !dir.is_absolute() {
            return Err(format!(
                "{field}.working_dir must be an absolute path, not '{}'",
                dir.display()
            ));
        }
    }
    Ok(Compiled {
        program: PathBuf::from(program),
        args,
        env: config.env.clone(),
        inherit_env: config.inherit_env.clone(),
        working_dir: config.working_dir.clone(),
    })
}

fn allowed(slot: &Slot) -> bool {
    matches!(
        slot,
        Slot::Service
            | Slot::Environment
            | Slot::DeploymentKey
            | Slot::RecoveryId
            | Slot::IdempotencyKey
            | Slot::Action
    )
}

/// A value for an argument: a name, not an option, not a path escape.
fn argument_value(slot: &Slot, value: &str) -> Result<String, StepError> {
    let ok = (1..=200).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._/-".contains(&b))
        && !value.contains("..")
        && !value.starts_with('-');
    if ok {
        Ok(value.to_string())
    } else {
        Err(StepError::permanent(format!(
            "{{{}}} is {}, which is not allowed in a command (only [A-Za-z0-9._/-], \
             1-200 characters, no '..', no leading '-'); nothing was run",
            slot.name(),
            shown(value)
        )))
    }
}

/// Reads `from` to the end into `kept`, keeping the last [`KEEP`] bytes
/// (the caller may stop reading early and still has what was read).
async fn tail(from: Option<impl AsyncRead + Unpin>, kept: &mut Vec<u8>) {
    let Some(mut from) = from else {
        return;
    };
    let mut buf = [0u8; 4096];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > KEEP {
                    kept.drain(..kept.len() - KEEP);
                }
            }
        }
    }
}

/// Carries out recovery steps by running configured programs.
pub struct CommandExecutor {
    actions: BTreeMap<String, Compiled>,
}

impl CommandExecutor {
    /// An executor for `config`; fails, naming the field, on a command that is
    /// not valid (relative program, unknown or disallowed slot, bad variable).
    pub fn new(config: &CommandConfig) -> Result<Self, String> {
        if config.actions.is_empty() {
            return Err("command.actions: no action has a command".into());
        }
        let actions = config
            .actions
            .iter()
            .map(|(action, c)| Ok((action.clone(), compile(action, c)?)))
            .collect::<Result<_, String>>()?;
        Ok(CommandExecutor { actions })
    }

    async fn run_one(&self, c: &Compiled, request: &StepRequest) -> StepResult {
        // Every argument is checked before anything starts.
        let args = c
            .args
            .iter()
            .map(|t| t.render(request, &argument_value))
            .collect::<Result<Vec<_>, _>>()?;
        let program = c.program.display().to_string();
        let mut command = tokio::process::Command::new(&c.program);
        command
            .args(&args)
            .env_clear()
            .envs(
                c.inherit_env
                    .iter()
                    .filter_map(|name| std::env::var_os(name).map(|v| (name, v))),
            )
            .envs(&c.env)
            .env("MEDIC_IDEMPOTENCY_KEY", &request.idempotency_key)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(dir) = &c.working_dir {
            command.current_dir(dir);
        }
        let mut child = command
            .spawn()
            .map_err(|e| StepError::permanent(format!("cannot start {program}: {e}")))?;
        // Output is read while the program runs (a full pipe would stall it).
        // Once it has exited, a process it left in the background may still
        // hold the pipes open: reading then stops after a short grace period.
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let (out, err) = (child.stdout.take(), child.stderr.take());
        let (exited, on_exit) = tokio::sync::oneshot::channel::<()>();
        let wait = async {
            let status = child.wait().await;
            let _ = exited.send(());
            status
        };
        let read = async {
            let both = async {
                tokio::join!(tail(out, &mut stdout), tail(err, &mut stderr));
            };
            let grace = async {
                let _ = on_exit.await;
                tokio::time::sleep(OUTPUT_GRACE).await;
            };
            tokio::select! {
                () = both => {}
                () = grace => {}
            }
        };
        let (status, ()) = tokio::join!(wait, read);
        let status =
            status.map_err(|e| StepError::permanent(format!("lost track of {program}: {e}")))?;
        if status.success() {
            let mut detail = format!("{program} exited with status 0");
            let out = clean_tail(&stdout, SHOWN);
            if !out.is_empty() {
                detail.push_str("; stdout: ");
                detail.push_str(&out);
            }
            return Ok(StepDone {
                detail,
                http_status: None,
                observed: None,
            });
        }
        let mut detail = match status.code() {
            Some(code) => format!("{program} exited with status {code}"),
            None => {
                use std::os::unix::process::ExitStatusExt;
                match status.signal() {
                    Some(signal) => format!("{program} was killed by signal {signal}"),
                    None => format!("{program} failed"),
                }
            }
        };
        let err = clean_tail(&stderr, SHOWN);
        if !err.is_empty() {
            detail.push_str("; stderr: ");
            detail.push_str(&err);
        }
        Err(StepError::permanent(detail))
    }
}

impl StepExecutor for CommandExecutor {
    fn kind(&self) -> &'static str {
        "command"
    }

    fn supports(&self, action: &str) -> bool {
        self.actions.contains_key(action)
    }

    fn run<'a>(&'a self, request: &'a StepRequest) -> BoxFuture<'a, StepResult> {
        Box::pin(async move {
            match self.actions.get(&request.action) {
                Some(c) => self.run_one(c, request).await,
                None => Err(StepError::permanent(format!(
                    "no command for {}",
                    shown(&request.action)
                ))),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(argv: &[&str]) -> CommandActionConfig {
        CommandActionConfig {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            env: BTreeMap::new(),
            inherit_env: default_inherit_env(),
            working_dir: None,
        }
    }

    #[test]
    fn commands_are_checked_at_start() {
        assert!(compile(
            "a",
            &action(&["/usr/bin/kubectl", "rollout", "undo", "deploy/{service}"])
        )
        .is_ok());
        for (argv, why) in [
            (vec![], "argv is empty"),
            (vec!["kubectl"], "absolute path"),
            (vec!["/bin/{service}"], "cannot come from a slot"),
            (vec!["/bin/echo", "{param.to}"], "not allowed in a command"),
            (vec!["/bin/echo", "{ci.run_id}"], "not allowed in a command"),
            (vec!["/bin/echo", "{nope}"], "unknown slot"),
        ] {
            let e = compile("a", &action(&argv)).expect_err(why);
            assert!(e.contains(why), "{argv:?}: {e}");
        }
        let mut env = action(&["/bin/echo"]);
        env.env.insert("MEDIC_IDEMPOTENCY_KEY".into(), "x".into());
        assert!(compile("a", &env).is_err());
    }

    #[test]
    fn only_name_like_values_reach_a_command() {
        for good in ["checkout", "prod/eu-1", "v1.2.3", "checkout/prod"] {
            assert!(argument_value(&Slot::Service, good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "a b",
            "a;b",
            "../etc",
            "a/../b",
            "-rf",
            "--kubeconfig",
            "$(x)",
            "a\nb",
        ] {
            assert!(argument_value(&Slot::Service, bad).is_err(), "{bad}");
        }
        assert!(argument_value(&Slot::Service, &"a".repeat(201)).is_err());
    }
}
