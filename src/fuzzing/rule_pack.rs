//! The `rule_pack` target: a user rule pack loaded over a base excerpt of the built-in one.

use super::*;

/// A small excerpt of the built-in pack: its first few entries of every
/// section. `rule_pack` loads inputs over it instead of over the whole pack,
/// which takes a hundred times longer to compile.
pub(super) static BASE_PACK: LazyLock<String> = LazyLock::new(|| {
    let mut out = String::from("version: 1\n");
    let mut taken = 0;
    for line in crate::stages::categorize::rules::DEFAULT_PACK.lines() {
        if !line.starts_with([' ', '#']) && line.ends_with(':') {
            out.push_str(line);
            out.push('\n');
            taken = 0;
        } else if line.starts_with("  - {") && taken < 6 {
            out.push_str(line);
            out.push('\n');
            taken += 1;
        }
    }
    out
});

/// `rule_pack`: the input is one rule-pack YAML file, loaded over an excerpt
/// of the built-in pack the way `categorize.rule_packs` are loaded over the
/// whole of it (same code: replacing, disabling, adding entries, compiling).
///
/// Properties: loading never panics; in a pack that loads, every keyword of
/// the file's own rules scans as a well-formed hit of its rule (or the line
/// is ignored as noise), and so does the text itself.
pub fn rule_pack(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let packs = [
        ("base.yaml".to_string(), BASE_PACK.clone()),
        ("fuzz.yaml".to_string(), text.to_string()),
    ];
    if let Ok(pack) = RulePack::build(&packs) {
        check_pack(&pack, text);
    }
}

fn check_pack(pack: &RulePack, text: &str) {
    assert_eq!(pack.version().len(), 12);
    check_scan(pack, text);
    let own: Vec<(String, usize)> = pack
        .keywords()
        .filter(|(_, rule)| pack.rules()[*rule].file == "fuzz.yaml")
        .map(|(keyword, rule)| (keyword.to_string(), rule))
        .take(64)
        .collect();
    for (keyword, rule) in own {
        let hits = check_scan(pack, &keyword);
        if pack.rules()[rule].regex.is_some() {
            continue;
        }
        if hits.is_empty() {
            let line = keyword.to_ascii_lowercase();
            assert!(
                pack.keywords()
                    .any(|(k, r)| pack.rules()[r].kind == RuleKind::Ignore
                        && line.contains(&k.to_ascii_lowercase())),
                "keyword {keyword:?} alone fires nothing, and no ignore pattern matches it"
            );
        } else {
            assert!(
                hits.contains(&rule),
                "keyword {keyword:?} alone does not fire its rule {}",
                pack.rules()[rule].id
            );
        }
    }
}
