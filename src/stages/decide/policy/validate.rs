//! Validation of a strategy's tree: references, cycles, reachability,
//! terminals, gate timeouts, known actions and parameter types.

use super::*;

fn type_of(value: &serde_yaml_ng::Value) -> Option<ParamType> {
    match value {
        serde_yaml_ng::Value::Bool(_) => Some(ParamType::Bool),
        serde_yaml_ng::Value::Number(n) if n.is_i64() || n.is_u64() => Some(ParamType::Int),
        serde_yaml_ng::Value::Number(_) => Some(ParamType::Float),
        serde_yaml_ng::Value::String(_) => Some(ParamType::Text),
        _ => None,
    }
}

/// Whether the values a field check compares with fit the field.
fn check_field_values(field: Field, check: &Check) -> Result<(), String> {
    use serde_yaml_ng::Value;
    let fits = |v: &Value| -> Result<(), String> {
        let ok = match field {
            Field::FailureType => v.as_str().is_some_and(|s| s.parse::<FailureType>().is_ok()),
            Field::Severity => v.as_str().is_some_and(|s| s.parse::<Severity>().is_ok()),
            Field::Components => v.as_str().is_some_and(|s| s.parse::<Component>().is_ok()),
            Field::Environment | Field::Service | Field::Rules => v.is_string(),
            Field::Transient | Field::FromCi => v.is_bool(),
            Field::Confidence | Field::AffectedUsers | Field::ErrorRate | Field::SignalCount => {
                v.is_number()
            }
        };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "{} cannot be compared with {}",
                field.name(),
                crate::stages::decide::tree::value_text(v)
            ))
        }
    };
    for v in check
        .equals
        .iter()
        .chain(check.one_of.iter().flatten())
        .chain(check.at_least.iter())
    {
        fits(v)?;
    }
    let ordered = matches!(
        field,
        Field::Severity
            | Field::Confidence
            | Field::AffectedUsers
            | Field::ErrorRate
            | Field::SignalCount
    );
    if (check.at_least.is_some() || check.at_most.is_some()) && !ordered {
        return Err(format!("{} has no order: use equals or in", field.name()));
    }
    if check.at_most.is_some() && field == Field::Severity {
        return Err("severity takes at_least (at least this severe), not at_most".into());
    }
    Ok(())
}

/// Checks one strategy; see the module documentation for the rules.
pub fn validate(s: &Strategy) -> Result<(), PolicyError> {
    let err = |node: Option<&str>, reason: String| PolicyError {
        file: s.file.clone(),
        strategy: Some(s.id.clone()),
        node: node.map(str::to_string),
        reason,
    };
    if !(0.0..=1.0).contains(&s.prior_success_rate) {
        return Err(err(
            None,
            format!(
                "prior_success_rate {} is not in [0, 1]",
                s.prior_success_rate
            ),
        ));
    }
    if !(s.prior_weight.is_finite() && s.prior_weight > 0.0) {
        return Err(err(
            None,
            format!("prior_weight {} must be positive", s.prior_weight),
        ));
    }
    if !s.nodes.contains_key(&s.root) {
        return Err(err(None, format!("root '{}' is not a node", s.root)));
    }
    let mut branch_nodes = BTreeSet::new();
    for (id, node) in &s.nodes {
        let id = id.as_str();
        for (_, target) in node.edges() {
            if !s.nodes.contains_key(target) {
                return Err(err(Some(id), format!("refers to unknown node '{target}'")));
            }
        }
        match node {
            Node::Action { action, params, .. } => {
                let (_, schema) =
                    ACTIONS
                        .iter()
                        .find(|(name, _)| name == action)
                        .ok_or_else(|| {
                            err(
                                Some(id),
                                format!(
                                    "unknown action '{action}' (known: {})",
                                    ACTIONS
                                        .iter()
                                        .map(|(n, _)| *n)
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                ),
                            )
                        })?;
                for (name, value) in params {
                    let (_, want) = schema.iter().find(|(p, _)| p == name).ok_or_else(|| {
                        err(Some(id), format!("{action} has no parameter '{name}'"))
                    })?;
                    let got = type_of(value);
                    let fits = got == Some(*want)
                        || (*want == ParamType::Float && got == Some(ParamType::Int));
                    if !fits {
                        return Err(err(
                            Some(id),
                            format!(
                                "parameter '{name}' of {action} must be {want:?}, not {value:?}"
                            ),
                        ));
                    }
                }
            }
            Node::Gate {
                timeout_secs,
                on_timeout,
                ..
            } => {
                if timeout_secs.unwrap_or(0) == 0 {
                    return Err(err(Some(id), "a gate needs a timeout_secs above 0".into()));
                }
                if on_timeout.is_none() {
                    return Err(err(
                        Some(id),
                        "a gate needs on_timeout: what happens when nobody answers".into(),
                    ));
                }
            }
            Node::Wait {
                delay_secs,
                until,
                deadline_secs,
                on_deadline,
                ..
            } => match (delay_secs, until) {
                (Some(_), None) => {}
                (None, Some(_)) if deadline_secs.unwrap_or(0) > 0 && on_deadline.is_some() => {}
                (None, Some(_)) => {
                    return Err(err(
                        Some(id),
                        "waiting until a condition needs deadline_secs and on_deadline".into(),
                    ))
                }
                _ => {
                    return Err(err(
                        Some(id),
                        "a wait needs either delay_secs or until".into(),
                    ))
                }
            },
            Node::Parallel { branches, .. } => {
                if branches.len() < 2 {
                    return Err(err(
                        Some(id),
                        "a parallel node needs at least two branches".into(),
                    ));
                }
                for b in branches {
                    match s.nodes.get(b) {
                        Some(Node::Action {
                            next: None,
                            on_failure: None,
                            ..
                        }) => {
                            branch_nodes.insert(b.as_str());
                        }
                        _ => {
                            return Err(err(
                                Some(id),
                                format!(
                                    "branch '{b}' must be an action without next or on_failure"
                                ),
                            ))
                        }
                    }
                }
            }
            Node::Condition { check, .. } => {
                let kinds = [
                    check.field.is_some(),
                    check.health_check.is_some(),
                    check.metric.is_some(),
                ];
                if kinds.iter().filter(|k| **k).count() != 1 {
                    return Err(err(
                        Some(id),
                        "a check reads exactly one of field, health_check, metric".into(),
                    ));
                }
                if check.field.is_some()
                    && check.equals.is_none()
                    && check.one_of.is_none()
                    && check.at_least.is_none()
                    && check.at_most.is_none()
                {
                    return Err(err(
                        Some(id),
                        "a field check needs equals, in, at_least or at_most".into(),
                    ));
                }
                if check.metric.is_some() && check.below.is_none() && check.above.is_none() {
                    return Err(err(Some(id), "a metric check needs below or above".into()));
                }
                if let Some(field) = check.field {
                    check_field_values(field, check).map_err(|reason| err(Some(id), reason))?;
                }
            }
            Node::Terminal { .. } => {}
        }
    }
    // A branch runs only inside its parallel node: nothing else may lead to it.
    for (id, node) in &s.nodes {
        for (edge, target) in node.edges() {
            if edge != "branch" && branch_nodes.contains(target) {
                return Err(err(
                    Some(id),
                    format!(
                        "'{target}' is a parallel branch; only its parallel node may lead to it"
                    ),
                ));
            }
        }
        if let Node::Parallel { branches, .. } = node {
            let distinct: BTreeSet<&String> = branches.iter().collect();
            if distinct.len() != branches.len() {
                return Err(err(Some(id), "a branch is listed twice".into()));
            }
        }
    }
    if branch_nodes.contains(s.root.as_str()) {
        return Err(err(None, format!("root '{}' is a parallel branch", s.root)));
    }
    // An action without `next` ends a path without a terminal, unless it is a parallel branch.
    for (id, node) in &s.nodes {
        if let Node::Action { next: None, .. } = node {
            if !branch_nodes.contains(id.as_str()) {
                return Err(err(
                    Some(id),
                    "the path ends here without a terminal (add next)".into(),
                ));
            }
        }
    }
    // Cycles and reachability, by depth-first search from the root.
    let mut state: BTreeMap<&str, u8> = BTreeMap::new(); // 1 = on the stack, 2 = done
    fn visit<'a>(
        s: &'a Strategy,
        id: &'a str,
        state: &mut BTreeMap<&'a str, u8>,
        path: &mut Vec<&'a str>,
    ) -> Result<(), String> {
        match state.get(id) {
            Some(2) => return Ok(()),
            Some(_) => {
                path.push(id);
                let start = path.iter().position(|n| *n == id).unwrap_or(0);
                return Err(path[start..].join(" -> "));
            }
            None => {}
        }
        state.insert(id, 1);
        path.push(id);
        if let Some(node) = s.nodes.get(id) {
            for (_, next) in node.edges() {
                visit(s, next, state, path)?;
            }
        }
        path.pop();
        state.insert(id, 2);
        Ok(())
    }
    visit(s, &s.root, &mut state, &mut Vec::new())
        .map_err(|cycle| err(None, format!("cycle: {cycle}")))?;
    if let Some(unreachable) = s.nodes.keys().find(|id| !state.contains_key(id.as_str())) {
        return Err(err(
            Some(unreachable),
            format!("unreachable from root '{}'", s.root),
        ));
    }
    Ok(())
}
