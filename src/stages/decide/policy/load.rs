//! Loading a policy: the built-in strategies, then policy files in order, a
//! strategy with an existing id replacing it; every strategy validated.

use super::*;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    version: u32,
    strategies: Vec<Strategy>,
}

impl Policy {
    /// The built-in policy.
    pub fn default_policy() -> Policy {
        // Compiled-in; the tests load it on every run.
        Policy::load(&[]).unwrap_or_else(|e| panic!("the built-in policy is invalid: {e}"))
    }

    /// The built-in policy with `files` (`(name, YAML)`) applied in order:
    /// a strategy with an existing id replaces it.
    pub fn load(files: &[(String, String)]) -> Result<Policy, PolicyError> {
        let mut all = vec![(
            "default_strategies.yaml".to_string(),
            DEFAULT_POLICY.to_string(),
        )];
        all.extend(files.iter().cloned());
        let mut strategies: Vec<Strategy> = Vec::new();
        let mut digest = Sha256::new();
        for (file, text) in &all {
            digest.update(file.as_bytes());
            digest.update(text.as_bytes());
            let err = |reason: String| PolicyError {
                file: file.clone(),
                strategy: None,
                node: None,
                reason,
            };
            let parsed: PolicyFile =
                serde_yaml_ng::from_str(text).map_err(|e| err(e.to_string()))?;
            if parsed.version != 1 {
                return Err(err(format!(
                    "unsupported policy version {} (this medic reads version 1)",
                    parsed.version
                )));
            }
            let mut seen = BTreeSet::new();
            for mut s in parsed.strategies {
                if !seen.insert(s.id.clone()) {
                    return Err(PolicyError {
                        file: file.clone(),
                        strategy: Some(s.id),
                        node: None,
                        reason: "duplicate strategy id".into(),
                    });
                }
                s.file = file.clone();
                validate(&s)?;
                s.prepared = crate::stages::decide::tree::prepare(&s);
                match strategies.iter().position(|x| x.id == s.id) {
                    Some(i) => strategies[i] = s,
                    None => strategies.push(s),
                }
            }
        }
        let version = crate::stages::short_version(digest);
        Ok(Policy {
            strategies,
            version,
        })
    }

    /// Loads every `*.yaml` file of a directory (sorted by name) over the built-in policy.
    pub fn load_dir(dir: &std::path::Path) -> Result<Policy, PolicyError> {
        let err = |reason: String| PolicyError {
            file: dir.display().to_string(),
            strategy: None,
            node: None,
            reason,
        };
        let mut paths: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| err(e.to_string()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
            .collect();
        paths.sort();
        Policy::load_files(&paths)
    }

    /// Loads the given files over the built-in policy.
    pub fn load_files(paths: &[std::path::PathBuf]) -> Result<Policy, PolicyError> {
        let mut files = Vec::new();
        for path in paths {
            let text = std::fs::read_to_string(path).map_err(|e| PolicyError {
                file: path.display().to_string(),
                strategy: None,
                node: None,
                reason: e.to_string(),
            })?;
            files.push((path.display().to_string(), text));
        }
        Policy::load(&files)
    }
}
