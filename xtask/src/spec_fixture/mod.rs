//! `cargo xtask spec-fixture`: derives from the published specifications in `../shared/specs`
//! (ECS 9.4.0 `fields.csv`; OCSF 1.8.0 dictionary, events, objects, profiles) the facts the
//! format tests check records against, into `tests/fixtures/specs/*.tsv`: names, types,
//! arrays, requirement levels, enums with their captions, profiles, deprecations. No
//! descriptions are copied. `--check` (and the unit test below) fails when the committed
//! fixture no longer matches the specs.
mod ecs;
mod ocsf;

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// The folder with the published specifications, beside the repository.
pub(crate) fn default_specs() -> PathBuf {
    crate::workspace_root().join("../shared/specs")
}

/// Where the fixture lives in the project.
fn fixture_dir() -> PathBuf {
    crate::workspace_root().join("tests/fixtures/specs")
}

/// (file name, content) of each derived fixture file.
fn derive(specs: &Path) -> Result<Vec<(&'static str, String)>> {
    let csv = std::fs::read_to_string(specs.join("ecs-9.4.0/fields.csv"))
        .with_context(|| format!("reading {}/ecs-9.4.0/fields.csv", specs.display()))?;
    Ok(vec![
        ("ecs-9.4.0.tsv", ecs::derive(&csv)?),
        ("ocsf-1.8.0.tsv", ocsf::derive(&specs.join("ocsf-1.8.0"))?),
    ])
}

/// Writes the fixture, or with `check` compares it with what the specs give.
pub(crate) fn main(specs: &Path, check: bool) -> Result<()> {
    let stale = stale_files(specs, !check)?;
    if !stale.is_empty() {
        bail!(
            "the spec fixture in {} does not match {}: {} (run `cargo xtask spec-fixture`)",
            fixture_dir().display(),
            specs.display(),
            stale.join(", ")
        );
    }
    Ok(())
}

/// The fixture files that differ from the specs; with `write`, rewritten first.
fn stale_files(specs: &Path, write: bool) -> Result<Vec<String>> {
    let mut stale = Vec::new();
    for (name, text) in derive(specs)? {
        let path = fixture_dir().join(name);
        if write {
            std::fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
            println!("wrote {} ({} lines)", path.display(), text.lines().count());
        }
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            stale.push(name.to_string());
        }
    }
    Ok(stale)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CI runs where `../shared/specs` is: the committed fixture is what the specs say.
    #[test]
    fn spec_fixture_matches_the_published_specs() {
        let specs = default_specs();
        if !specs.join("ecs-9.4.0/fields.csv").exists() {
            eprintln!("{}: not present, skipped", specs.display());
            return;
        }
        let stale = stale_files(&specs, false).expect("deriving the fixture");
        assert!(
            stale.is_empty(),
            "stale spec fixture {stale:?}: run `cargo xtask spec-fixture`"
        );
    }
}
