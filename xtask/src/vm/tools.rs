//! Host tools the VM tests need, installed when missing.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use super::run;

/// virtme-ng release this was verified with; installed when no `vng` is found.
const VIRTME_NG: &str = "virtme-ng==1.42";

/// Installs qemu, kmod, busybox and virtme-ng when missing; cheap when all are present.
pub fn ensure_vm_tools() -> Result<()> {
    // busybox builds virtme-ng's initramfs (the Debian kernels have 9p as modules); depmod
    // indexes the unpacked kernels' modules.
    let needed = [
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("depmod", "kmod"),
        ("busybox", "busybox-static"),
        ("dpkg-deb", "dpkg"),
        ("apt-get", "apt"),
    ];
    let missing: Vec<&str> = needed
        .iter()
        .filter(|(bin, _)| which(bin).is_none())
        .map(|(_, pkg)| *pkg)
        .collect();
    if !missing.is_empty() {
        eprintln!("vm: installing {}", missing.join(" "));
        // On a fresh machine the package lists may be empty: update once before installing.
        run(Command::new("apt-get").args(["update", "-q"]))?;
        run(Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
    }
    if find_vng().is_none() {
        eprintln!("vm: installing {VIRTME_NG} from PyPI");
        let pip = |extra: &[&str]| {
            Command::new("python3")
                .args(["-m", "pip", "install", "-q", VIRTME_NG])
                .args(extra)
                .output()
        };
        // A Debian-managed python refuses a plain `pip install`; pyenv's accepts it.
        if !pip(&[])?.status.success() {
            run(Command::new("python3").args([
                "-m",
                "pip",
                "install",
                "-q",
                "--break-system-packages",
                VIRTME_NG,
            ]))?;
        }
        find_vng().context("virtme-ng installed, but no `vng` script found")?;
    }
    Ok(())
}

/// Finds `vng`: on PATH (pyenv's shims), else where this python's pip puts scripts (pyenv's
/// versions/X/bin, /usr/local/bin), else the user scheme's bin (`pip install --user`), else
/// pyenv's shims.
pub fn find_vng() -> Option<PathBuf> {
    if let Some(path) = which("vng") {
        return Some(path);
    }
    let python = |code: &str| -> Option<String> {
        let out = Command::new("python3").args(["-c", code]).output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let dirs = [
        python("import sysconfig; print(sysconfig.get_path('scripts'))"),
        python("import site; print(site.getuserbase() + '/bin')"),
        env::var("HOME")
            .ok()
            .map(|home| format!("{home}/.local/bin")),
        // A shell that did not read ~/.bashrc (CI) may lack pyenv on PATH, where vng may be.
        env::var("PYENV_ROOT")
            .or_else(|_| env::var("HOME").map(|home| format!("{home}/.pyenv")))
            .ok()
            .map(|root| format!("{root}/shims")),
    ];
    dirs.into_iter()
        .flatten()
        .map(|d| Path::new(&d).join("vng"))
        .find(|p| p.is_file())
}

pub(super) fn which(bin: &str) -> Option<PathBuf> {
    // sbin may be missing from a non-root PATH; depmod lives there.
    let path = format!(
        "{}:/usr/local/sbin:/usr/sbin:/sbin",
        env::var("PATH").unwrap_or_default()
    );
    path.split(':')
        .map(|dir| Path::new(dir).join(bin))
        .find(|p| p.is_file())
}
