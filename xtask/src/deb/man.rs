//! flow-agent(8) from packaging/man/flow-agent.8.in and the binary's own `--help` output: the
//! commands and options in the page are the ones the binary has, whoever extends the CLI.
use std::{path::Path, process::Command};

use anyhow::{bail, Context, Result};

/// One `--help` text of clap, parsed.
#[derive(Debug, Default, PartialEq)]
pub struct Help {
    pub about: String,
    pub usage: String,
    pub sections: Vec<Section>,
}

#[derive(Debug, Default, PartialEq)]
pub struct Section {
    pub title: String,
    pub items: Vec<Item>,
}

/// `term  description`, e.g. `--config <CONFIG>` and what it does.
#[derive(Debug, Default, PartialEq, Clone)]
pub struct Item {
    pub term: String,
    pub description: String,
}

impl Help {
    pub fn parse(text: &str) -> Help {
        let mut help = Help::default();
        let mut about = Vec::new();
        for line in text.lines() {
            if let Some(usage) = line.strip_prefix("Usage: ") {
                help.usage = usage.trim().to_string();
            } else if is_section_title(line) {
                help.sections.push(Section {
                    title: line.trim_end_matches(':').to_string(),
                    items: Vec::new(),
                });
            } else if let Some(section) = help.sections.last_mut() {
                add_item_line(section, line);
            } else if help.usage.is_empty() && !line.trim().is_empty() {
                about.push(line.trim());
            }
        }
        help.about = about.join(" ");
        help
    }

    pub fn section(&self, title: &str) -> &[Item] {
        self.sections
            .iter()
            .find(|s| s.title == title)
            .map_or(&[], |s| &s.items)
    }
}

fn is_section_title(line: &str) -> bool {
    line.ends_with(':')
        && line.starts_with(|c: char| c.is_ascii_uppercase())
        && line[..line.len() - 1]
            .chars()
            .all(|c| c.is_ascii_alphabetic() || c == ' ')
}

/// Items start two columns in; a description follows after two or more spaces on the same
/// line or, in clap's long form, on the lines below, indented further.
fn add_item_line(section: &mut Section, line: &str) {
    if line.trim().is_empty() {
        return;
    }
    let indent = line.len() - line.trim_start().len();
    let text = line.trim();
    let starts_item = indent <= 6 && (indent == 2 || text.starts_with('-'));
    if starts_item {
        let (term, description) = match text.find("  ") {
            Some(i) => (&text[..i], text[i..].trim()),
            None => (text, ""),
        };
        section.items.push(Item {
            term: term.to_string(),
            description: description.to_string(),
        });
    } else if let Some(item) = section.items.last_mut() {
        if !item.description.is_empty() {
            item.description.push(' ');
        }
        item.description.push_str(text);
    }
}

/// Escapes text for troff: backslashes, and a leading `.` or `'` that would read as a request.
pub fn escape(text: &str) -> String {
    let s = text.replace('\\', "\\e");
    if s.starts_with('.') || s.starts_with('\'') {
        format!("\\&{s}")
    } else {
        s
    }
}

/// `-h, --help` → bold option names; `<CONFIG>` and `[ARGS]` → italic.
fn term(term: &str) -> String {
    term.split(' ')
        .map(|word| {
            let word = escape(word);
            if word.starts_with('-') {
                let (name, comma) = match word.strip_suffix(',') {
                    Some(n) => (n, ","),
                    None => (word.as_str(), ""),
                };
                format!("\\fB{}\\fR{comma}", name.replace('-', "\\-"))
            } else if word.starts_with('<') || word.starts_with('[') {
                format!("\\fI{word}\\fR")
            } else {
                format!("\\fB{word}\\fR")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn items(out: &mut String, items: &[Item], skip: &[Item]) {
    for item in items
        .iter()
        .filter(|i| !skip.iter().any(|s| s.term == i.term))
    {
        out.push_str(".TP\n");
        out.push_str(&term(&item.term));
        out.push('\n');
        out.push_str(&escape(&item.description));
        out.push('\n');
    }
}

fn help_of(binary: &Path, args: &[&str]) -> Result<Help> {
    let out = Command::new(binary)
        .args(args)
        .arg("--help")
        .output()
        .with_context(|| format!("running {} {} --help", binary.display(), args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "{} {} --help failed: {}",
            binary.display(),
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(Help::parse(&String::from_utf8_lossy(&out.stdout)))
}

/// The COMMANDS section: one subsection per command (nested commands too), with the options
/// that are not global.
fn commands(
    out: &mut String,
    binary: &Path,
    path: &[&str],
    help: &Help,
    global: &[Item],
) -> Result<()> {
    for cmd in help.section("Commands") {
        let name = cmd.term.split([' ', ',']).next().unwrap_or_default();
        if name == "help" {
            continue;
        }
        let mut sub_path = path.to_vec();
        sub_path.push(name);
        let sub = help_of(binary, &sub_path)?;
        out.push_str(&format!(".SS \"flow\\-agent {}\"\n", sub_path.join(" ")));
        out.push_str(&escape(&sub.about));
        out.push_str("\n.PP\nUsage: ");
        out.push_str(&escape(&sub.usage));
        out.push('\n');
        for section in &sub.sections {
            if section.title != "Commands" {
                items(out, &section.items, global);
            }
        }
        commands(out, binary, &sub_path, &sub, global)?;
    }
    Ok(())
}

/// Renders the page from `template` for `binary`, dated `date` (YYYY-MM-DD).
pub fn render(template: &str, binary: &Path, version: &str, date: &str) -> Result<String> {
    let top = help_of(binary, &[])?;
    if top.about.is_empty() || top.section("Commands").is_empty() {
        bail!(
            "{} --help has no description or no commands: is it flow-agent?",
            binary.display()
        );
    }
    let global = top.section("Options").to_vec();
    let mut cmds = String::new();
    commands(&mut cmds, binary, &[], &top, &global)?;
    let mut opts = String::new();
    items(&mut opts, &global, &[]);
    let page = template
        .replace("@DATE@", date)
        .replace("@VERSION@", version)
        .replace("@ABOUT@", &escape(&top.about))
        .replace("@COMMANDS@\n", &cmds)
        .replace("@OPTIONS@\n", &opts);
    for field in ["@DATE@", "@VERSION@", "@ABOUT@", "@COMMANDS@", "@OPTIONS@"] {
        if page.contains(field) {
            bail!("man page template: {field} was not filled (it must stand on a line of its own)");
        }
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOP: &str = "Host-level network flow sensor: every TCP and UDP flow\n\n\
Usage: flow-agent [OPTIONS] [COMMAND]\n\n\
Commands:\n  run      Capture flows and write events\n  help     Print this message\n\n\
Options:\n      --log-level <LOG_LEVEL>  Log level of the agent [default: info]\n  \
-h, --help                   Print help\n  -V, --version                Print version\n";

    const LONG: &str = "Capture flows\n\nUsage: flow-agent run [OPTIONS]\n\nOptions:\n      \
--config <CONFIG>\n          Configuration file (TOML); without it: native events\n          \
on stdout\n  -h, --help\n          Print help\n";

    #[test]
    fn parses_short_help() {
        let h = Help::parse(TOP);
        assert_eq!(
            h.about,
            "Host-level network flow sensor: every TCP and UDP flow"
        );
        assert_eq!(h.usage, "flow-agent [OPTIONS] [COMMAND]");
        assert_eq!(h.section("Commands").len(), 2);
        assert_eq!(
            h.section("Options")[0],
            Item {
                term: "--log-level <LOG_LEVEL>".into(),
                description: "Log level of the agent [default: info]".into()
            }
        );
        assert_eq!(h.section("Options")[1].term, "-h, --help");
    }

    #[test]
    fn parses_long_help_with_wrapped_descriptions() {
        let h = Help::parse(LONG);
        let opts = h.section("Options");
        assert_eq!(opts.len(), 2);
        assert_eq!(opts[0].term, "--config <CONFIG>");
        assert_eq!(
            opts[0].description,
            "Configuration file (TOML); without it: native events on stdout"
        );
        assert_eq!(opts[1].description, "Print help");
    }

    #[test]
    fn renders_terms_and_escapes() {
        assert_eq!(term("-h, --help"), "\\fB\\-h\\fR, \\fB\\-\\-help\\fR");
        assert_eq!(
            term("--config <CONFIG>"),
            "\\fB\\-\\-config\\fR \\fI<CONFIG>\\fR"
        );
        assert_eq!(escape(".hidden"), "\\&.hidden");
        assert_eq!(escape("a\\b"), "a\\eb");
    }
}
