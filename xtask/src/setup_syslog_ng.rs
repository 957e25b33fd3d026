//! syslog-ng for the syslog sink's tests, without installing it: Debian's syslog-ng-core and
//! rsyslog conflict, and the tests need both. The package and the libraries it needs that the
//! machine lacks are downloaded (`apt-get download`) and unpacked (`dpkg-deb -x`) into
//! `<workspace>/.test-cache/syslog-ng`; the tests run it with `LD_LIBRARY_PATH` and
//! `--module-path` pointing there (tests/tests/syslog_sink.rs).
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

use crate::run;

const PACKAGE: &str = "syslog-ng-core";

/// Where the unpacked package lives.
pub fn cache_dir() -> PathBuf {
    crate::workspace_root().join(".test-cache/syslog-ng")
}

/// `LD_LIBRARY_PATH` for a syslog-ng unpacked under `root`.
pub fn library_path(root: &Path) -> String {
    [
        "usr/lib/syslog-ng",
        "usr/lib/x86_64-linux-gnu",
        "lib/x86_64-linux-gnu",
        "usr/lib/aarch64-linux-gnu",
        "lib/aarch64-linux-gnu",
    ]
    .iter()
    .map(|d| root.join(d).display().to_string())
    .collect::<Vec<_>>()
    .join(":")
}

fn works(root: &Path) -> bool {
    Command::new(root.join("usr/sbin/syslog-ng"))
        .arg("--version")
        .env("LD_LIBRARY_PATH", library_path(root))
        .output()
        .is_ok_and(|o| o.status.success())
}

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

/// The package and those of its direct dependencies that are not installed.
fn packages_to_fetch() -> Result<Vec<String>> {
    let out = Command::new("apt-cache")
        .args(["depends", "--no-recommends", "--no-suggests", PACKAGE])
        .output()
        .context("running apt-cache depends")?;
    if !out.status.success() {
        bail!(
            "apt-cache depends {PACKAGE} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let mut pkgs = vec![PACKAGE.to_string()];
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let line = line.trim().trim_start_matches('|');
        let Some(dep) = line.strip_prefix("Depends: ") else {
            continue;
        };
        // Only libraries: the init-script helpers (lsb-base, sysvinit-utils) are not needed
        // to run the daemon in the foreground.
        let dep = dep.trim();
        if dep.starts_with("lib") && !dep.starts_with('<') && !installed(dep) {
            pkgs.push(dep.to_string());
        }
    }
    Ok(pkgs)
}

pub fn ensure() -> Result<()> {
    let root = cache_dir();
    if works(&root) {
        return Ok(());
    }
    eprintln!("xtask: unpacking {PACKAGE} into {}", root.display());
    let download = root.with_file_name("syslog-ng-debs");
    let _ = std::fs::remove_dir_all(&download);
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&download)?;
    std::fs::create_dir_all(&root)?;
    // Without package lists (a fresh machine), apt knows nothing yet.
    let pkgs = match packages_to_fetch() {
        Ok(p) => p,
        Err(_) => {
            run(Command::new("apt-get").args(["update", "-q"]))?;
            packages_to_fetch()?
        }
    };
    let fetch = |pkgs: &[String]| {
        run(Command::new("apt-get")
            .arg("download")
            .args(pkgs)
            .current_dir(&download))
    };
    if fetch(&pkgs).is_err() {
        run(Command::new("apt-get").args(["update", "-q"]))?;
        fetch(&pkgs)?;
    }
    for entry in std::fs::read_dir(&download)? {
        let deb = entry?.path();
        if deb.extension().is_some_and(|e| e == "deb") {
            run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))?;
        }
    }
    std::fs::remove_dir_all(&download)?;
    if !works(&root) {
        bail!(
            "syslog-ng unpacked into {} does not run (missing libraries? try: LD_LIBRARY_PATH={} ldd {}/usr/sbin/syslog-ng)",
            root.display(),
            library_path(&root),
            root.display()
        );
    }
    Ok(())
}
