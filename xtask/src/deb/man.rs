//! The manual pages and shell completions the package ships, made by the binary itself from
//! its command-line definition (`flow-agent manual DIR`: clap_mangen; `flow-agent completions
//! SHELL`: clap_complete), so they hold exactly the commands and options it has. flow-agent(8)
//! gets the package's own sections from packaging/man/flow-agent.8.in.
use std::{fs, path::Path, process::Command};

use anyhow::{bail, Context, Result};

/// Where Debian's bash-completion, zsh and fish look for packaged completions.
pub const COMPLETIONS: &[(&str, &str)] = &[
    ("bash", "usr/share/bash-completion/completions/flow-agent"),
    ("zsh", "usr/share/zsh/vendor-completions/_flow-agent"),
    (
        "fish",
        "usr/share/fish/vendor_completions.d/flow-agent.fish",
    ),
];

fn output_of(binary: &Path, args: &[&str]) -> Result<Vec<u8>> {
    let out = Command::new(binary)
        .args(args)
        .output()
        .with_context(|| format!("running {} {}", binary.display(), args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "{} {} failed: {}",
            binary.display(),
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out.stdout)
}

/// Every page, as (file name, troff text), flow-agent.8 first, dated `date` (YYYY-MM-DD).
pub fn pages(
    template: &str,
    binary: &Path,
    scratch: &Path,
    date: &str,
) -> Result<Vec<(String, String)>> {
    let dir = scratch.join("man");
    let dir_arg = dir.to_str().context("scratch path is not UTF-8")?;
    output_of(binary, &["manual", dir_arg, "--date", date])?;
    let mut pages = Vec::new();
    for entry in fs::read_dir(&dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        let text = fs::read_to_string(dir.join(&name))?;
        let text = if name == "flow-agent.8" {
            with_package_sections(&text, template)?
        } else {
            text
        };
        pages.push((name, text));
    }
    pages.sort_by_key(|(name, _)| (name != "flow-agent.8", name.clone()));
    if pages.first().is_none_or(|(n, _)| n != "flow-agent.8") {
        bail!("{} manual wrote no flow-agent.8", binary.display());
    }
    Ok(pages)
}

/// The template's sections before the page's SEE ALSO, its own SEE ALSO lines at the end.
fn with_package_sections(page: &str, template: &str) -> Result<String> {
    const SEE_ALSO: &str = ".SH \"SEE ALSO\"\n";
    let (sections, see_also) = template
        .split_once(SEE_ALSO)
        .context("packaging/man/flow-agent.8.in has no SEE ALSO section")?;
    let (before, after) = page
        .split_once(SEE_ALSO)
        .context("the generated flow-agent.8 has no SEE ALSO section")?;
    let sections: String = sections
        .lines()
        .filter(|l| !l.starts_with(".\\\""))
        .map(|l| format!("{l}\n"))
        .collect();
    Ok(format!("{before}{sections}{SEE_ALSO}{after}{see_also}"))
}

/// (path in the package, script) for bash, zsh and fish.
pub fn completions(binary: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    COMPLETIONS
        .iter()
        .map(|(shell, path)| {
            Ok((
                path.to_string(),
                output_of(binary, &["completions", shell])?,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_sections_go_before_see_also() {
        let page = ".TH X 8\n.SH OPTIONS\nopts\n.SH \"SEE ALSO\"\ndocs/cli.md\n";
        let template = ".\\\" comment\n.SH \"THE PACKAGED SERVICE\"\ntext\n.SH \"SEE ALSO\"\n.BR systemctl (1)\n";
        assert_eq!(
            with_package_sections(page, template).unwrap(),
            ".TH X 8\n.SH OPTIONS\nopts\n.SH \"THE PACKAGED SERVICE\"\ntext\n.SH \"SEE ALSO\"\n\
             docs/cli.md\n.BR systemctl (1)\n"
        );
    }
}
