//! The manual pages and shell completions, made from the command-line definition itself
//! (clap_mangen, clap_complete), so they list exactly the commands and options the binary
//! has. `cargo xtask deb` runs the hidden `manual` command and ships the pages with the
//! package's own sections added.
use std::{io, path::Path};

use clap_mangen::Man;

/// Man pages: flow-agent(8), then flow-agent-COMMAND(8) for each visible command.
pub(crate) fn write_pages(cmd: clap::Command, dir: &Path, date: &str) -> io::Result<()> {
    // `help` is clap's own: --help says the same.
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let version = format!("flow-agent {}", env!("CARGO_PKG_VERSION"));
    let page = |cmd: clap::Command| {
        Man::new(cmd)
            .section("8")
            .date(date)
            .source(version.clone())
            .manual("System Administration")
    };
    std::fs::create_dir_all(dir)?;
    let mut main = Vec::new();
    let (name, description) = name_and_description();
    let top = page(cmd.clone().about(name).long_about(description));
    top.render_title(&mut main)?;
    top.render_name_section(&mut main)?;
    top.render_synopsis_section(&mut main)?;
    top.render_description_section(&mut main)?;
    top.render_options_section(&mut main)?;
    top.render_subcommands_section(&mut main)?;
    main.extend_from_slice(manual_sections(crate::help::AFTER_LONG_HELP).as_bytes());
    std::fs::write(dir.join("flow-agent.8"), main)?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("flow-agent-{}", sub.get_name());
        let mut text = Vec::new();
        page(sub.clone())
            .title(name.to_uppercase())
            .render(&mut text)?;
        std::fs::write(dir.join(format!("{name}.8")), text)?;
    }
    Ok(())
}

/// The long description's first line (`flow-agent - what`) gives NAME its text; the rest is
/// the DESCRIPTION.
fn name_and_description() -> (&'static str, &'static str) {
    let text = crate::help::LONG_ABOUT;
    let (first, rest) = text.split_once("\n\n").unwrap_or(("", text));
    let name = first
        .strip_prefix("flow-agent - ")
        .unwrap_or(crate::help::ABOUT);
    (name, rest)
}

/// Escapes text for troff: backslashes, and a leading `.` or `'` that would read as a request.
fn escape(text: &str) -> String {
    let s = text.replace('\\', "\\e");
    if s.starts_with('.') || s.starts_with('\'') {
        format!("\\&{s}")
    } else {
        s
    }
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// The manual sections of the long help (an upper-case heading at the margin, its text
/// indented below) as troff `.SH` sections.
fn manual_sections(text: &str) -> String {
    let mut out = String::new();
    let mut body: Vec<&str> = Vec::new();
    let mut heading: Option<&str> = None;
    for line in text.lines().chain(std::iter::once("END")) {
        let is_heading = !line.is_empty()
            && !line.starts_with(' ')
            && line.chars().all(|c| c.is_ascii_uppercase() || c == ' ');
        if !is_heading {
            body.push(line);
            continue;
        }
        if let Some(h) = heading {
            out.push_str(&format!(".SH \"{h}\"\n{}", section_body(&body)));
        }
        heading = Some(line);
        body.clear();
    }
    out
}

/// One section's indented text: `TERM   text` lines and a term alone on its line followed by
/// deeper text become tagged paragraphs; a line ending in `:` followed by deeper lines is an
/// example (kept as typed); everything else is running text.
fn section_body(lines: &[&str]) -> String {
    let lines: Vec<&str> = lines.iter().map(|l| l.trim_end()).collect();
    let base = lines
        .iter()
        .filter(|l| !l.is_empty())
        .map(|l| indent(l))
        .min()
        .unwrap_or(0);
    let deeper = |j: usize| {
        lines
            .get(j)
            .is_some_and(|l| !l.is_empty() && indent(l) > base)
    };
    let mut out = String::new();
    let (mut i, mut paragraph) = (0, false);
    while i < lines.len() {
        let (line, text) = (lines[i], lines[i].trim());
        i += 1;
        if line.is_empty() {
            paragraph = false;
        } else if indent(line) > base {
            out.push_str(&format!("{}\n", escape(text)));
        } else if let Some((term, rest)) = text.split_once("  ").filter(|(t, _)| t.len() <= 32) {
            out.push_str(&format!(
                ".TP\n\\fB{}\\fR\n{}\n",
                escape(term),
                escape(rest.trim())
            ));
            paragraph = false;
        } else if text.ends_with(':') && deeper(i) {
            out.push_str(&format!(".PP\n{}\n.RS\n.nf\n", escape(text)));
            while deeper(i) {
                out.push_str(&format!("{}\n", escape(lines[i].trim())));
                i += 1;
            }
            out.push_str(".fi\n.RE\n");
            paragraph = false;
        } else if deeper(i) && !text.ends_with('.') {
            out.push_str(&format!(".TP\n\\fB{}\\fR\n", escape(text)));
            paragraph = false;
        } else {
            if !paragraph {
                out.push_str(".PP\n");
                paragraph = true;
            }
            out.push_str(&format!("{}\n", escape(text)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_sections_become_troff_sections() {
        let text = "SIGNALS\n    SIGHUP   Reload the file.\n\nEXAMPLES\n    Run it:\n        \
                    flow-agent run\n    Plain text here.\n";
        assert_eq!(
            manual_sections(text),
            ".SH \"SIGNALS\"\n.TP\n\\fBSIGHUP\\fR\nReload the file.\n\
             .SH \"EXAMPLES\"\n.PP\nRun it:\n.RS\n.nf\nflow-agent run\n.fi\n.RE\n\
             .PP\nPlain text here.\n"
        );
    }

    #[test]
    fn every_help_section_is_in_the_manual() {
        let roff = manual_sections(crate::help::AFTER_LONG_HELP);
        for h in [
            "CONFIGURATION",
            "SIGNALS",
            "EXIT STATUS",
            "ENVIRONMENT",
            "SEE ALSO",
        ] {
            assert!(roff.contains(&format!(".SH \"{h}\"\n")), "{h}");
        }
    }
}
