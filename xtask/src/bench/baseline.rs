//! `--baseline REV`: flow-agent built at an older commit, measured in the same run as the
//! working tree's build. REV is checked out in a git worktree of its own under
//! target/bench/baseline/ and built with a target directory of its own, so that neither build
//! invalidates the other's.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::{run, workspace_root};

/// Worktrees of the baseline commits, one per short sha.
const WORKTREES: &str = "target/bench/baseline";
/// The target directory of every baseline build.
const TARGET_DIR: &str = "target/bench/baseline-target";

/// A commit an agent binary was built from.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Commit {
    /// Short sha; `-dirty` for a working tree with uncommitted changes.
    pub commit: String,
    pub subject: String,
}

/// `--baseline REV`, resolved.
pub struct Revision {
    /// As given.
    pub rev: String,
    /// Full sha.
    pub sha: String,
    pub commit: Commit,
}

/// Resolves REV to a commit of this repository; the error names REV and the git command.
pub fn resolve(rev: &str) -> Result<Revision> {
    let root = workspace_root();
    let spec = format!("{rev}^{{commit}}");
    let sha = git(
        &root,
        &["rev-parse", "--verify", "--end-of-options", spec.as_str()],
    )
    .with_context(|| format!("--baseline {rev}: no such commit"))?;
    let short = git(&root, &["rev-parse", "--short", sha.as_str()])?;
    let subject = git(&root, &["log", "-1", "--format=%s", sha.as_str()])?;
    Ok(Revision {
        rev: rev.into(),
        sha,
        commit: Commit {
            commit: short,
            subject,
        },
    })
}

/// Checks REV out (or reuses its checkout) and builds flow-agent there in release mode;
/// returns the binary.
pub fn build(rev: &Revision) -> Result<PathBuf> {
    let tree = worktree(rev)?;
    let target = workspace_root().join(TARGET_DIR);
    eprintln!(
        "bench: building flow-agent at {} ({} {}) in {}",
        rev.rev,
        rev.commit.commit,
        rev.commit.subject,
        tree.display()
    );
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo
        .current_dir(&tree)
        .args(["build", "--release", "-p", "flow-agent", "--target-dir"])
        .arg(&target);
    run(&mut cargo).with_context(|| format!("--baseline {}: building it failed", rev.rev))?;
    let binary = target.join("release/flow-agent");
    if !binary.exists() {
        bail!(
            "--baseline {}: the build left no {}",
            rev.rev,
            binary.display()
        );
    }
    Ok(binary)
}

/// What the worktree directory of a baseline commit holds.
#[derive(Debug)]
enum Found {
    Nothing,
    Checkout { head: String, dirty: bool },
    NotACheckout,
}

/// Whether the directory can be used as it is (`Ok(true)`) or a worktree is to be added there
/// (`Ok(false)`); otherwise what is in the way.
fn reusable(found: &Found, sha: &str) -> Result<bool, InTheWay> {
    match found {
        Found::Nothing => Ok(false),
        Found::Checkout { head, dirty: false } if head == sha => Ok(true),
        Found::Checkout { dirty: true, .. } => Err(InTheWay::Dirty),
        Found::Checkout { head, .. } => Err(InTheWay::AtOther(head.clone())),
        Found::NotACheckout => Err(InTheWay::NotACheckout),
    }
}

/// Why a baseline's worktree directory cannot be used as it is.
#[derive(Debug, PartialEq, thiserror::Error)]
enum InTheWay {
    #[error("has uncommitted changes")]
    Dirty,
    #[error("is at {0}")]
    AtOther(String),
    #[error("is not a git worktree")]
    NotACheckout,
}

/// The worktree of REV's commit: `git worktree add --detach` unless it is there already.
fn worktree(rev: &Revision) -> Result<PathBuf> {
    let root = workspace_root();
    let dir = root.join(WORKTREES).join(&rev.commit.commit);
    match reusable(&found(&dir)?, &rev.sha) {
        Ok(true) => return Ok(dir),
        Ok(false) => {}
        Err(why) => bail!(
            "--baseline {}: {path} {why}; remove it (git worktree remove --force {path}) and \
             run again",
            rev.rev,
            path = dir.display()
        ),
    }
    std::fs::create_dir_all(dir.parent().expect("under target/bench"))?;
    // --force: a worktree that `cargo clean` deleted is still registered.
    let path = dir.to_string_lossy();
    git(
        &root,
        &["worktree", "add", "--detach", "--force", &path, &rev.sha],
    )
    .with_context(|| format!("--baseline {}: checking it out", rev.rev))?;
    Ok(dir)
}

fn found(dir: &Path) -> Result<Found> {
    if !dir.exists() {
        return Ok(Found::Nothing);
    }
    // Without its own .git, git would answer for the repository around it.
    if !dir.join(".git").exists() {
        return Ok(Found::NotACheckout);
    }
    Ok(Found::Checkout {
        head: git(dir, &["rev-parse", "HEAD"])?,
        dirty: !git(dir, &["status", "--porcelain", "--untracked-files=no"])?.is_empty(),
    })
}

/// Runs git in `dir`; its trimmed stdout, or an error with the command and git's message.
fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let command = format!("git {}", args.join(" "));
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .output()
        .with_context(|| format!("starting {command}"))?;
    if !out.status.success() {
        bail!(
            "`{command}` in {} failed ({}): {}",
            dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worktree_is_reused_only_clean_and_at_the_commit() {
        let at = |head: &str, dirty| Found::Checkout {
            head: head.into(),
            dirty,
        };
        assert_eq!(reusable(&Found::Nothing, "abc"), Ok(false));
        assert_eq!(reusable(&at("abc", false), "abc"), Ok(true));
        assert_eq!(
            reusable(&at("def", false), "abc"),
            Err(InTheWay::AtOther("def".into()))
        );
        assert_eq!(reusable(&at("abc", true), "abc"), Err(InTheWay::Dirty));
        assert!(reusable(&Found::NotACheckout, "abc").is_err());
    }

    #[test]
    fn an_unknown_revision_is_named() {
        let err = format!("{:#}", resolve("no-such-rev-7f3a").err().unwrap());
        assert!(
            err.starts_with("--baseline no-such-rev-7f3a: no such commit"),
            "{err}"
        );
        assert!(err.contains("git rev-parse --verify"), "{err}");
    }
}
