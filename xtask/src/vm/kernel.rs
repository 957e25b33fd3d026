//! Debian kernel packages: found and downloaded with a private apt configuration, unpacked into
//! the cache. virtme-ng (1.42) takes the modules from the unpacked tree itself: it walks up from
//! the vmlinuz to the directory holding lib/modules, and in the guest links
//! /lib/modules/$(uname -r) there, so nothing is installed into the host's /lib/modules.

use std::cmp::Ordering;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::{file_name, output, run};

/// A kernel of the matrix: which Debian suite carries it and how its image package is named.
#[derive(Debug, Clone)]
pub struct KernelSpec {
    /// Short name used on the command line and in the matrix, e.g. "5.10".
    pub name: &'static str,
    pub suite: &'static str,
    /// The package is `<prefix><release>-amd64` where `<release>` has no '-': that leaves out
    /// the -cloud- flavour (no 9p modules, which virtme-ng mounts / with) and -rt-.
    prefix: &'static str,
}

const KERNELS: &[KernelSpec] = &[
    KernelSpec {
        name: "5.10",
        suite: "bullseye",
        prefix: "linux-image-5.10.0-",
    },
    KernelSpec {
        name: "6.1",
        suite: "bookworm",
        prefix: "linux-image-6.1.0-",
    },
    KernelSpec {
        name: "6.12",
        suite: "bookworm-backports",
        prefix: "linux-image-6.12.",
    },
];

impl KernelSpec {
    pub fn parse(name: &str) -> Result<KernelSpec> {
        KERNELS
            .iter()
            .find(|k| k.name == name)
            .cloned()
            .with_context(|| {
                let known: Vec<_> = KERNELS.iter().map(|k| k.name).collect();
                format!("unknown kernel {name:?}; known: {}", known.join(", "))
            })
    }

    fn matches(&self, package: &str) -> bool {
        package
            .strip_prefix(self.prefix)
            .and_then(|rest| rest.strip_suffix("-amd64"))
            .is_some_and(|release| !release.is_empty() && !release.contains('-'))
    }
}

/// An unpacked kernel: `<dir>/root/{boot/vmlinuz-<release>,lib/modules/<release>}`.
#[derive(Debug, Clone)]
pub struct FetchedKernel {
    pub name: String,
    pub package: String,
    /// `uname -r` inside the VM.
    pub release: String,
    pub vmlinuz: PathBuf,
    /// This kernel's directory in the cache; also holds the guest script and the console log.
    pub dir: PathBuf,
}

/// Downloads and unpacks the newest image package of `spec` (once: later calls reuse the
/// unpacked kernel).
pub fn fetch_kernel(spec: &KernelSpec, cache: &Path) -> Result<FetchedKernel> {
    let dir = cache.join("kernels").join(spec.name);
    let root = dir.join("root");
    let done = dir.join("package");
    if !done.is_file() {
        let apt = PrivateApt::new(cache)?;
        let package = apt.newest(spec)?;
        eprintln!("vm: fetching {package} from {}", spec.suite);
        let debs = cache.join("debs");
        let _ = fs::remove_dir_all(&debs);
        fs::create_dir_all(&debs)?;
        run(apt
            .command("apt-get")
            .arg("download")
            .arg(&package)
            .current_dir(&debs))?;
        let tmp = dir.join("root.tmp");
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(&tmp)?;
        run(Command::new("dpkg-deb")
            .arg("-x")
            .arg(only_entry(&debs)?)
            .arg(&tmp))?;
        let release = file_name(&only_entry(&tmp.join("lib/modules"))?);
        // The package ships no modules.dep; virtme-ng needs it to pick the 9p modules.
        run(Command::new("depmod").arg("-b").arg(&tmp).arg(&release))?;
        let _ = fs::remove_dir_all(&root);
        fs::rename(&tmp, &root)?;
        fs::remove_dir_all(&debs)?;
        // Written last: its presence means the unpacked kernel is complete.
        fs::write(&done, &package)?;
    }
    let package = fs::read_to_string(&done)?.trim().to_string();
    let release = file_name(&only_entry(&root.join("lib/modules"))?);
    Ok(FetchedKernel {
        name: spec.name.to_string(),
        package,
        vmlinuz: root.join("boot").join(format!("vmlinuz-{release}")),
        release,
        dir,
    })
}

/// apt with its own sources list, lists and archive cache: the host's apt setup is untouched.
struct PrivateApt {
    dir: PathBuf,
}

impl PrivateApt {
    fn new(cache: &Path) -> Result<PrivateApt> {
        let dir = cache.join("apt");
        for sub in ["lists/partial", "cache/archives/partial"] {
            fs::create_dir_all(dir.join(sub))?;
        }
        let keyring = "/usr/share/keyrings/debian-archive-keyring.gpg";
        let signed_by = match Path::new(keyring).is_file() {
            true => format!("[signed-by={keyring}] "),
            false => String::new(),
        };
        let mirror = host_debian_mirror();
        let sources: String = KERNELS
            .iter()
            .map(|k| format!("deb {signed_by}{mirror} {} main\n", k.suite))
            .collect();
        let list = dir.join("sources.list");
        let changed = fs::read_to_string(&list).ok().as_deref() != Some(sources.as_str());
        fs::write(&list, &sources)?;
        let apt = PrivateApt { dir };
        // The package lists are refreshed when missing or a day old, not on every fetch.
        let stamp = apt.dir.join("updated");
        let age = fs::metadata(&stamp)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok());
        if changed || age.is_none_or(|age| age > Duration::from_secs(24 * 3600)) {
            run(apt.command("apt-get").args(["update", "-q"]))?;
            fs::write(&stamp, "")?;
        }
        Ok(apt)
    }

    fn command(&self, program: &str) -> Command {
        let path = |sub: &str| self.dir.join(sub).display().to_string();
        let mut cmd = Command::new(program);
        for option in [
            format!("Dir::Etc::SourceList={}", path("sources.list")),
            "Dir::Etc::SourceParts=/dev/null".to_string(),
            format!("Dir::State::Lists={}", path("lists")),
            format!("Dir::Cache={}", path("cache")),
            format!("Dir::Cache::Archives={}", path("cache/archives")),
            // apt's _apt sandbox user may not be allowed to write into the workspace.
            "APT::Sandbox::User=root".to_string(),
        ] {
            cmd.args(["-o", &option]);
        }
        cmd
    }

    fn newest(&self, spec: &KernelSpec) -> Result<String> {
        let regex = format!("^{}", spec.prefix.replace('.', "\\."));
        let found = output(
            self.command("apt-cache")
                .args(["search", "--names-only", &regex]),
        )?;
        found
            .lines()
            .filter_map(|line| line.split_whitespace().next())
            .filter(|package| spec.matches(package))
            .max_by(|a, b| version_cmp(a, b))
            .map(str::to_string)
            .with_context(|| format!("no {}*-amd64 package in {}", spec.prefix, spec.suite))
    }
}

/// The Debian mirror the host's apt uses for its own release, else Debian's standard one.
fn host_debian_mirror() -> String {
    let os = fs::read_to_string("/etc/os-release").unwrap_or_default();
    let codename = os
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .unwrap_or("bookworm");
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(entries) = fs::read_dir("/etc/apt/sources.list.d") {
        files.extend(entries.flatten().map(|e| e.path()));
    }
    files.sort();
    for file in files {
        let text = fs::read_to_string(&file).unwrap_or_default();
        // apt reads only *.list (one-line) and *.sources (deb822) files.
        let found = match file.extension().and_then(|e| e.to_str()) {
            Some("sources") => mirror_in_deb822(&text, codename),
            Some("list") => mirror_in_one_line(&text, codename),
            _ => None,
        };
        if let Some(uri) = found {
            return uri.trim_end_matches('/').to_string();
        }
    }
    "http://deb.debian.org/debian".to_string()
}

fn mirror_in_one_line(text: &str, codename: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let line = line.split('#').next().unwrap_or("");
        // Drop the `[option=value ...]` part.
        let line = match (line.find('['), line.find(']')) {
            (Some(open), Some(close)) if open < close => {
                format!("{}{}", &line[..open], &line[close + 1..])
            }
            _ => line.to_string(),
        };
        let words: Vec<&str> = line.split_whitespace().collect();
        match words[..] {
            ["deb", uri, suite, ..] if suite == codename => Some(uri.to_string()),
            _ => None,
        }
    })
}

fn mirror_in_deb822(text: &str, codename: &str) -> Option<String> {
    text.split("\n\n").find_map(|stanza| {
        let field = |name: &str| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(str::trim)
        };
        let wanted = field("Enabled:") != Some("no")
            && field("Types:").is_some_and(|t| t.split_whitespace().any(|t| t == "deb"))
            && field("Suites:").is_some_and(|s| s.split_whitespace().any(|s| s == codename));
        wanted
            .then(|| {
                field("URIs:")?
                    .split_whitespace()
                    .next()
                    .map(str::to_string)
            })
            .flatten()
    })
}

/// Orders package names by their numeric parts, so that 5.10.0-9 < 5.10.0-32.
fn version_cmp(a: &str, b: &str) -> Ordering {
    fn parts(mut rest: &str) -> Vec<(u64, String)> {
        let mut parts = Vec::new();
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            let (number, tail) = rest.split_at(digits);
            let text = tail
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(tail.len());
            parts.push((number.parse().unwrap_or(0), tail[..text].to_string()));
            rest = &tail[text..];
        }
        parts
    }
    parts(a).cmp(&parts(b))
}

fn only_entry(dir: &Path) -> Result<PathBuf> {
    let mut entries = fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    match (entries.next(), entries.next()) {
        (Some(entry), None) => Ok(entry?.path()),
        _ => bail!("expected exactly one entry in {}", dir.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_plain_flavour_and_newest() {
        let spec = KernelSpec::parse("6.12").unwrap();
        assert!(spec.matches("linux-image-6.12.95+deb12-amd64"));
        assert!(!spec.matches("linux-image-6.12.95+deb12-cloud-amd64"));
        assert!(!spec.matches("linux-image-6.12.95+deb12-amd64-dbg"));
        let cmp = |a, b| version_cmp(a, b);
        assert_eq!(
            cmp("linux-image-5.10.0-9-amd64", "linux-image-5.10.0-32-amd64"),
            Ordering::Less
        );
        assert_eq!(
            cmp("6.12.90+deb12.1-amd64", "6.12.90+deb12-amd64"),
            Ordering::Greater
        );
    }

    #[test]
    fn finds_mirror() {
        let deb822 = "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n\nTypes: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n";
        assert_eq!(
            mirror_in_deb822(deb822, "bookworm").as_deref(),
            Some("http://mirror.example/debian")
        );
        let one = "# c\ndeb [arch=amd64 signed-by=/k.gpg] http://m.example/debian bookworm main\n";
        assert_eq!(
            mirror_in_one_line(one, "bookworm").as_deref(),
            Some("http://m.example/debian")
        );
        assert_eq!(mirror_in_one_line(one, "bullseye"), None);
    }
}
