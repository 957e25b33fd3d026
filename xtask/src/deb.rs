//! `cargo xtask deb`: the Debian package, assembled with dpkg-deb from packaging/ (no
//! cargo-deb): the binary, the systemd unit, the default configuration, flow-agent(8), the
//! user docs and the events' JSON Schema, maintainer scripts; Depends from dpkg-shlibdeps.
//! No shell completions: the agent has no generator for them (clap_complete) yet.
mod man;

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, ensure, Context, Result};

use crate::{run, workspace_root};

pub const PACKAGE: &str = "flow-agent";
const MAINTAINER: &str = "flow-agent developers <dev@flow-agent.invalid>";
/// Tools the assembly runs; `cargo xtask deb` installs them when missing.
pub const TOOLS: &[&str] = &["dpkg-dev", "binutils"];
/// The CA bundle the syslog `tls` transport and `https://` outputs verify servers with by
/// default (/etc/ssl/certs/ca-certificates.crt): recommended, since outputs may not need it.
const RECOMMENDS: &str = "ca-certificates";
/// docs/ pages that are for developers of the agent (benchmarks, VM test matrix), not for its
/// administrators: every other page goes to /usr/share/doc/flow-agent.
const DEVELOPER_DOCS: &[&str] = &["performance.md", "vm-tests.md"];
/// The events' JSON Schema, where tools find it whether or not docs are installed
/// (/usr/share/doc may be left out, e.g. in container images); the doc directory links to it
/// so that events.md's link to it works there.
const SCHEMA: &str = "usr/share/flow-agent/events.schema.json";
const SCHEMA_DOC_LINK: (&str, &str) = (
    "usr/share/doc/flow-agent/events.schema.json",
    "../../flow-agent/events.schema.json",
);

#[derive(clap::Args)]
pub struct DebArgs {
    /// Package this binary instead of building the release one (tests package the debug build).
    #[arg(long)]
    binary: Option<PathBuf>,
    /// Directory for the .deb [default: target/debian].
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn main(args: DebArgs) -> Result<()> {
    crate::setup::apt_install(TOOLS)?;
    let binary = match args.binary {
        Some(b) => b,
        None => {
            crate::setup::ensure_all()?;
            crate::build(true)?
        }
    };
    let out = args
        .out
        .unwrap_or_else(|| workspace_root().join("target/debian"));
    let deb = assemble(&binary, &out)?;
    lint(&deb)?;
    println!("{}", deb.display());
    Ok(())
}

/// A file of the package: where it goes, its mode, its bytes.
struct Entry {
    path: String,
    mode: u32,
    contents: Vec<u8>,
}

impl Entry {
    fn new(path: impl Into<String>, contents: Vec<u8>) -> Self {
        Self {
            path: path.into(),
            mode: 0o644,
            contents,
        }
    }
}

/// The docs/ pages for administrators, by name, in name order.
fn user_docs() -> Result<Vec<String>> {
    let dir = workspace_root().join("docs");
    let mut names = Vec::new();
    for e in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let name = e?.file_name().to_string_lossy().into_owned();
        if name.ends_with(".md") && !DEVELOPER_DOCS.contains(&name.as_str()) {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

fn read(rel: &str) -> Result<Vec<u8>> {
    let p = workspace_root().join(rel);
    fs::read(&p).with_context(|| format!("reading {}", p.display()))
}

fn gzip(data: &[u8], dir: &Path, name: &str) -> Result<Vec<u8>> {
    let tmp = dir.join(name);
    fs::write(&tmp, data)?;
    // -n: no name or time stamp inside, so the same input gives the same bytes.
    run(Command::new("gzip").args(["-9nf"]).arg(&tmp))?;
    let gz = dir.join(format!("{name}.gz"));
    let bytes = fs::read(&gz)?;
    fs::remove_file(&gz)?;
    Ok(bytes)
}

/// Debian revision from the top entry of packaging/debian/changelog, which must be this
/// workspace version's; and the entry's date (YYYY-MM-DD) for the man page.
fn changelog_version(changelog: &str, upstream: &str) -> Result<(String, String)> {
    let first = changelog.lines().next().unwrap_or_default();
    let version = first
        .split_once('(')
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(v, _)| v.to_string())
        .with_context(|| format!("packaging/debian/changelog: no version in {first:?}"))?;
    let version_upstream = version
        .rsplit_once('-')
        .map_or(version.as_str(), |(u, _)| u);
    ensure!(
        version_upstream == upstream,
        "packaging/debian/changelog's top entry is {version}, the workspace is {upstream}: add an entry"
    );
    let trailer = changelog
        .lines()
        .find(|l| l.starts_with(" -- "))
        .context("packaging/debian/changelog: no trailer line")?;
    let date = trailer.split("  ").nth(1).unwrap_or_default();
    Ok((version, rfc2822_to_iso(date)?))
}

/// `Mon, 23 Nov 2026 12:00:00 +0000` → `2026-11-23`.
fn rfc2822_to_iso(date: &str) -> Result<String> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let parts: Vec<&str> = date.split_whitespace().collect();
    let (day, month, year) = match parts.as_slice() {
        [_, d, m, y, ..] => (d, m, y),
        _ => bail!("changelog date {date:?} is not RFC 2822"),
    };
    let m = MONTHS
        .iter()
        .position(|x| x == month)
        .with_context(|| format!("changelog date {date:?}: unknown month"))?;
    Ok(format!("{year}-{:02}-{:02}", m + 1, day.parse::<u32>()?))
}

fn architecture() -> Result<String> {
    let out = Command::new("dpkg")
        .arg("--print-architecture")
        .output()
        .context("running dpkg --print-architecture")?;
    ensure!(out.status.success(), "dpkg --print-architecture failed");
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}

/// `libc6 (>= 2.34), libgcc-s1 (>= 4.2)` for the staged binary, from dpkg-shlibdeps (which
/// wants a debian/control to read, so it runs in a scratch directory with a minimal one).
fn shlib_depends(binary: &Path, scratch: &Path) -> Result<String> {
    let dir = scratch.join("shlibdeps");
    fs::create_dir_all(dir.join("debian"))?;
    fs::write(
        dir.join("debian/control"),
        format!("Source: {PACKAGE}\n\nPackage: {PACKAGE}\nArchitecture: any\n"),
    )?;
    let out = Command::new("dpkg-shlibdeps")
        .args(["-O", "-e"])
        .arg(binary)
        .current_dir(&dir)
        .output()
        .context("running dpkg-shlibdeps (package dpkg-dev)")?;
    ensure!(
        out.status.success(),
        "dpkg-shlibdeps failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout)?;
    let deps = text
        .lines()
        .find_map(|l| l.strip_prefix("shlibs:Depends="))
        .context("dpkg-shlibdeps printed no shlibs:Depends")?;
    ensure!(
        deps.contains("libc6"),
        "dpkg-shlibdeps found no libc6 dependency: {deps}"
    );
    Ok(deps.trim().to_string())
}

fn control(version: &str, arch: &str, depends: &str, installed_kib: u64) -> String {
    format!(
        "Package: {PACKAGE}\n\
         Version: {version}\n\
         Architecture: {arch}\n\
         Maintainer: {MAINTAINER}\n\
         Installed-Size: {installed_kib}\n\
         Depends: {depends}, adduser\n\
         Recommends: {RECOMMENDS}\n\
         Section: net\n\
         Priority: optional\n\
         Description: host-level network flow sensor (eBPF)\n \
         flow-agent sees every TCP and UDP flow on the host through eBPF programs\n \
         and attributes it to the process behind it (pid, executable, command line,\n \
         user, cgroup, container, network namespace). It emits flow start, update\n \
         and end events to files, syslog or HTTP in several schemas for SIEMs.\n \
         .\n \
         This package runs it as a hardened systemd service under its own user;\n \
         once its programs are attached the agent keeps only CAP_SYS_PTRACE and\n \
         CAP_SYS_ADMIN.\n"
    )
}

/// Builds `<out>/flow-agent_<version>_<arch>.deb` from `binary`; returns its path.
pub fn assemble(binary: &Path, out: &Path) -> Result<PathBuf> {
    let upstream = env!("CARGO_PKG_VERSION");
    let changelog = String::from_utf8(read("packaging/debian/changelog")?)?;
    let (version, date) = changelog_version(&changelog, upstream)?;
    let arch = architecture()?;
    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let scratch = out.join(format!("{PACKAGE}.build"));
    let _ = fs::remove_dir_all(&scratch);
    let root = scratch.join("root");
    fs::create_dir_all(&root)?;

    // The binary first: stripped (debug info is most of a debug build) and checked to run.
    let staged_bin = root.join("usr/bin/flow-agent");
    fs::create_dir_all(staged_bin.parent().unwrap())?;
    fs::copy(binary, &staged_bin)
        .with_context(|| format!("copying {} (build it first)", binary.display()))?;
    run(Command::new("strip")
        .args([
            "--strip-unneeded",
            "--remove-section=.comment",
            "--remove-section=.note",
        ])
        .arg(&staged_bin))?;
    fs::set_permissions(&staged_bin, fs::Permissions::from_mode(0o755))?;
    let pages = man::pages(
        &String::from_utf8(read("packaging/man/flow-agent.8.in")?)?,
        &staged_bin,
        &scratch,
        &date,
    )?;

    let mut entries = vec![
        // Debian's place for units since the /usr merge (lintian: systemd-service-in-odd-location).
        Entry::new(
            "usr/lib/systemd/system/flow-agent.service",
            read("packaging/flow-agent.service")?,
        ),
        // 0644 as Debian wants; postinst's statoverride makes it root:flow-agent 0640.
        Entry::new("etc/flow-agent/config.toml", read("packaging/config.toml")?),
        Entry::new(
            "usr/share/doc/flow-agent/copyright",
            read("packaging/debian/copyright")?,
        ),
        Entry::new(
            "usr/share/doc/flow-agent/changelog.Debian.gz",
            gzip(changelog.as_bytes(), &scratch, "changelog.Debian")?,
        ),
        Entry::new(
            "usr/share/lintian/overrides/flow-agent",
            read("packaging/debian/lintian-overrides")?,
        ),
        Entry::new(SCHEMA, read("docs/events.schema.json")?),
        // The fingerprint methods' licences: JA4S's FoxIO License 1.1 keeps it off by default.
        Entry::new("usr/share/doc/flow-agent/NOTICE", read("NOTICE")?),
    ];
    for (name, text) in &pages {
        entries.push(Entry::new(
            format!("usr/share/man/man8/{name}.gz"),
            gzip(text.as_bytes(), &scratch, name)?,
        ));
    }
    for (path, script) in man::completions(&staged_bin)? {
        entries.push(Entry::new(path, script));
    }
    // Uncompressed: the pages link to each other, and the unit's Documentation= names
    // install.md.
    for name in user_docs()? {
        entries.push(Entry::new(
            format!("usr/share/doc/flow-agent/{name}"),
            read(&format!("docs/{name}"))?,
        ));
    }
    for e in &entries {
        let p = root.join(&e.path);
        fs::create_dir_all(p.parent().unwrap())?;
        fs::write(&p, &e.contents)?;
        fs::set_permissions(&p, fs::Permissions::from_mode(e.mode))?;
    }
    let (link, target) = SCHEMA_DOC_LINK;
    std::os::unix::fs::symlink(target, root.join(link))?;
    // Every directory 0755 whatever the umask; files were set above.
    set_dir_modes(&root)?;

    // Regular files only: md5sums lists no symlinks.
    let files: Vec<String> = std::iter::once("usr/bin/flow-agent".to_string())
        .chain(entries.iter().map(|e| e.path.clone()))
        .collect();
    let installed_kib = installed_size(&root)?;
    let depends = shlib_depends(&staged_bin, &scratch)?;

    let debian = root.join("DEBIAN");
    fs::create_dir_all(&debian)?;
    fs::set_permissions(&debian, fs::Permissions::from_mode(0o755))?;
    let meta = [
        (
            "control",
            0o644,
            control(&version, &arch, &depends, installed_kib).into_bytes(),
        ),
        (
            "conffiles",
            0o644,
            b"/etc/flow-agent/config.toml\n".to_vec(),
        ),
        ("md5sums", 0o644, md5sums(&root, &files)?.into_bytes()),
        ("postinst", 0o755, read("packaging/debian/postinst")?),
        ("prerm", 0o755, read("packaging/debian/prerm")?),
        ("postrm", 0o755, read("packaging/debian/postrm")?),
    ];
    for (name, mode, contents) in meta {
        let p = debian.join(name);
        fs::write(&p, contents)?;
        fs::set_permissions(&p, fs::Permissions::from_mode(mode))?;
    }

    let deb = out.join(format!("{PACKAGE}_{version}_{arch}.deb"));
    run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zxz", "--build"])
        .arg(&root)
        .arg(&deb))?;
    fs::remove_dir_all(&scratch)?;
    Ok(deb)
}

fn set_dir_modes(dir: &Path) -> Result<()> {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
    for e in fs::read_dir(dir)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            set_dir_modes(&e.path())?;
        }
    }
    Ok(())
}

/// Installed-Size as dpkg-gencontrol counts it: KiB per file rounded up, plus one per directory.
fn installed_size(dir: &Path) -> Result<u64> {
    let mut kib = 0;
    for e in fs::read_dir(dir)? {
        let e = e?;
        let meta = e.metadata()?;
        kib += if meta.is_dir() {
            1 + installed_size(&e.path())?
        } else {
            meta.len().div_ceil(1024)
        };
    }
    Ok(kib)
}

fn md5sums(root: &Path, files: &[String]) -> Result<String> {
    let out = Command::new("md5sum")
        .args(files)
        .current_dir(root)
        .output()
        .context("running md5sum")?;
    ensure!(out.status.success(), "md5sum failed");
    Ok(String::from_utf8(out.stdout)?)
}

/// lintian, when installed: errors and warnings fail the build.
fn lint(deb: &Path) -> Result<()> {
    if Command::new("lintian").arg("--version").output().is_err() {
        eprintln!("xtask deb: lintian is not installed, package not checked");
        return Ok(());
    }
    run(Command::new("lintian")
        .args(["--fail-on", "error,warning"])
        .arg(deb))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changelog_gives_revision_and_date() {
        let text = "flow-agent (0.1.0-1) unstable; urgency=medium\n\n  * x\n\n \
                    -- A B <a@b.invalid>  Mon, 23 Nov 2026 12:00:00 +0000\n";
        assert_eq!(
            changelog_version(text, "0.1.0").unwrap(),
            ("0.1.0-1".to_string(), "2026-11-23".to_string())
        );
        let err = changelog_version(text, "0.2.0").unwrap_err().to_string();
        assert!(err.contains("0.2.0"), "{err}");
    }

    /// A shipped page's relative links lead to a shipped page (or the schema's link), so that
    /// /usr/share/doc/flow-agent reads without the repository.
    #[test]
    fn shipped_docs_link_only_to_shipped_files() {
        let docs = user_docs().unwrap();
        assert!(docs.iter().any(|d| d == "install.md"), "{docs:?}");
        let schema = SCHEMA_DOC_LINK.0.rsplit('/').next().unwrap();
        let mut broken = Vec::new();
        for name in &docs {
            let text = String::from_utf8(read(&format!("docs/{name}")).unwrap()).unwrap();
            for (_, rest) in text.match_indices("](").map(|(i, _)| text.split_at(i + 2)) {
                let target = rest.split([')', '#']).next().unwrap_or_default();
                let external = target.contains("://") || target.starts_with("mailto:");
                if target.is_empty() || external {
                    continue;
                }
                if !(docs.iter().any(|d| d == target) || target == schema) {
                    broken.push(format!("{name} -> {target}"));
                }
            }
        }
        assert!(
            broken.is_empty(),
            "links to files the package lacks: {broken:?}"
        );
    }

    #[test]
    fn packaging_changelog_matches_the_workspace() {
        let text = String::from_utf8(read("packaging/debian/changelog").unwrap()).unwrap();
        changelog_version(&text, env!("CARGO_PKG_VERSION")).unwrap();
    }
}
