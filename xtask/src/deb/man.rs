//! flow-agent(8) from packaging/man/flow-agent.8.in and the binary's own `--help` output: the
//! commands and options in the page are the ones the binary has, whoever extends the CLI.
use std::{path::Path, process::Command};

use anyhow::{bail, Context, Result};

/// One help text of clap, parsed.
#[derive(Debug, Default, PartialEq)]
pub struct Help {
    /// The text before `Usage:`, lines joined, paragraphs separated by blank lines.
    pub about: String,
    pub usage: String,
    pub sections: Vec<Section>,
    /// Manual sections after the options (`SIGNALS`, `EXIT STATUS`, ...: an upper-case
    /// heading at the margin, its text indented), as the long `--help` may carry them.
    pub manual: Vec<(String, Vec<String>)>,
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
        let mut about: Vec<Vec<&str>> = vec![Vec::new()];
        // Item lines go to the last section until a line at the margin ends it.
        let mut in_items = false;
        for line in text.lines() {
            if let Some(usage) = line.strip_prefix("Usage: ") {
                help.usage = usage.trim().to_string();
            } else if is_manual_heading(line) {
                help.manual.push((line.trim().to_string(), Vec::new()));
                in_items = false;
            } else if let Some((_, body)) = help.manual.last_mut() {
                body.push(line.to_string());
            } else if is_section_title(line) {
                help.sections.push(Section {
                    title: line.trim_end_matches(':').to_string(),
                    items: Vec::new(),
                });
                in_items = true;
            } else if let (true, Some(section)) = (in_items, help.sections.last_mut()) {
                if !line.is_empty() && !line.starts_with(' ') {
                    in_items = false;
                } else {
                    add_item_line(section, line);
                }
            } else if help.usage.is_empty() {
                if line.trim().is_empty() {
                    about.push(Vec::new());
                } else {
                    about.last_mut().unwrap().push(line.trim());
                }
            }
        }
        help.about = about
            .iter()
            .filter(|p| !p.is_empty())
            .map(|p| p.join(" "))
            .collect::<Vec<_>>()
            .join("\n\n");
        help
    }

    pub fn section(&self, title: &str) -> &[Item] {
        self.sections
            .iter()
            .find(|s| s.title == title)
            .map_or(&[], |s| &s.items)
    }
}

/// `EXIT STATUS`, `SIGNALS`: upper-case words at the margin.
fn is_manual_heading(line: &str) -> bool {
    line.len() >= 3
        && line.starts_with(|c: char| c.is_ascii_uppercase())
        && line.chars().all(|c| c.is_ascii_uppercase() || c == ' ')
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

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// One manual section's indented text as troff: `TERM   text` lines and a term alone on its
/// line followed by deeper text become tagged paragraphs; a line ending in `:` followed by
/// deeper lines is an example (kept as typed); everything else is running text.
pub fn manual_section(body: &[String]) -> String {
    let lines: Vec<&str> = body.iter().map(|l| l.trim_end()).collect();
    let base = lines
        .iter()
        .filter(|l| !l.is_empty())
        .map(|l| indent(l))
        .min()
        .unwrap_or(0);
    let mut out = String::new();
    let mut i = 0;
    let mut paragraph = false;
    while i < lines.len() {
        let line = lines[i];
        if line.is_empty() {
            paragraph = false;
            i += 1;
            continue;
        }
        let text = line.trim();
        let deeper = |j: usize| {
            lines
                .get(j)
                .is_some_and(|l| !l.is_empty() && indent(l) > base)
        };
        if indent(line) > base {
            // A continuation after a tagged paragraph or an example: running text.
            out.push_str(&escape(text));
            out.push('\n');
            i += 1;
            continue;
        }
        if let Some((term_text, rest)) = text.split_once("  ").filter(|(t, _)| t.len() <= 32) {
            out.push_str(&format!(
                ".TP\n\\fB{}\\fR\n{}\n",
                escape(term_text),
                escape(rest.trim())
            ));
            paragraph = false;
        } else if text.ends_with(':') && deeper(i + 1) {
            out.push_str(&format!(".PP\n{}\n.RS\n.nf\n", escape(text)));
            i += 1;
            while deeper(i) {
                out.push_str(&escape(lines[i].trim()));
                out.push('\n');
                i += 1;
            }
            out.push_str(".fi\n.RE\n");
            paragraph = false;
            continue;
        } else if deeper(i + 1) && !text.ends_with('.') {
            out.push_str(&format!(".TP\n\\fB{}\\fR\n", escape(text)));
            paragraph = false;
        } else {
            if !paragraph {
                out.push_str(".PP\n");
                paragraph = true;
            }
            out.push_str(&escape(text));
            out.push('\n');
        }
        i += 1;
    }
    out
}

/// `binary ARGS -h` (the summary: commands and options) or `--help` (the full manual).
fn help_of(binary: &Path, args: &[&str], flag: &str) -> Result<Help> {
    let out = Command::new(binary)
        .args(args)
        .arg(flag)
        .env("COLUMNS", "100")
        .output()
        .with_context(|| format!("running {} {} {flag}", binary.display(), args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "{} {} {flag} failed: {}",
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
        let sub = help_of(binary, &sub_path, "-h")?;
        out.push_str(&format!(".SS \"flow\\-agent {}\"\n", sub_path.join(" ")));
        out.push_str(&escape(&sub.about.replace("\n\n", " ")));
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

/// Renders the page from `template` for `binary`, dated `date` (YYYY-MM-DD): the commands
/// and options from `-h`, the description and manual sections from `--help`.
pub fn render(template: &str, binary: &Path, version: &str, date: &str) -> Result<String> {
    let top = help_of(binary, &[], "-h")?;
    if top.about.is_empty() || top.section("Commands").is_empty() {
        bail!(
            "{} -h has no description or no commands: is it flow-agent?",
            binary.display()
        );
    }
    let full = help_of(binary, &[], "--help")?;
    // A long description may open with the manual's own NAME line: `flow-agent - what`.
    let mut paragraphs: Vec<&str> = full.about.split("\n\n").collect();
    let name = match paragraphs
        .first()
        .and_then(|p| p.strip_prefix("flow-agent - "))
    {
        Some(n) => {
            let n = n.to_string();
            paragraphs.remove(0);
            n
        }
        None => top.about.trim_end_matches('.').to_string(),
    };
    if paragraphs.is_empty() {
        paragraphs.push(&top.about);
    }
    let description = paragraphs
        .iter()
        .map(|p| escape(p))
        .collect::<Vec<_>>()
        .join("\n.PP\n");
    let global = top.section("Options").to_vec();
    let mut cmds = String::new();
    commands(&mut cmds, binary, &[], &top, &global)?;
    let mut opts = String::new();
    items(&mut opts, &global, &[]);
    let mut manual = String::new();
    let mut see_also = String::new();
    for (heading, body) in &full.manual {
        let text = manual_section(body);
        if heading == "SEE ALSO" {
            see_also = text;
        } else {
            manual.push_str(&format!(".SH \"{heading}\"\n{text}"));
        }
    }
    let page = template
        .replace("@DATE@", date)
        .replace("@VERSION@", version)
        .replace("@NAME@", &escape(&name))
        .replace("@DESCRIPTION@\n", &format!("{description}\n"))
        .replace("@COMMANDS@\n", &cmds)
        .replace("@OPTIONS@\n", &opts)
        .replace("@MANUAL@\n", &manual)
        .replace("@SEE_ALSO@\n", &see_also);
    for field in [
        "@DATE@",
        "@VERSION@",
        "@NAME@",
        "@DESCRIPTION@",
        "@COMMANDS@",
        "@OPTIONS@",
        "@MANUAL@",
        "@SEE_ALSO@",
    ] {
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

    /// A long `--help` in the shape clap prints with `long_about` and `after_long_help`.
    const MANUAL: &str = r"flow-agent - host network flow sensor

flow-agent watches every TCP and UDP flow
of this host.

Without a command, flow-agent runs.

Usage: flow-agent [OPTIONS] [COMMAND]

Commands:
  run      Capture flows

Options:
  -c, --config <FILE>
          Configuration file (TOML).

SIGNALS
    SIGHUP   Reload the configuration file: outputs
             change without loss.
    SIGTERM, SIGINT
             Stop: every open flow ends.

EXIT STATUS
    0   Success.
    3   This kernel lacks a hook.

CONFIGURATION
    One TOML file with sections.
    Every key is optional.

    A second paragraph.

EXAMPLES
    Validate a file:
        flow-agent check-config /etc/flow-agent/config.toml

SEE ALSO
    docs/cli.md
";

    #[test]
    fn parses_the_long_help_manual() {
        let h = Help::parse(MANUAL);
        assert_eq!(
            h.about,
            "flow-agent - host network flow sensor\n\nflow-agent watches every TCP and UDP \
             flow of this host.\n\nWithout a command, flow-agent runs."
        );
        assert_eq!(h.section("Options").len(), 1);
        let headings: Vec<&str> = h.manual.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(
            headings,
            [
                "SIGNALS",
                "EXIT STATUS",
                "CONFIGURATION",
                "EXAMPLES",
                "SEE ALSO"
            ]
        );
        assert_eq!(
            manual_section(&h.manual[0].1),
            ".TP\n\\fBSIGHUP\\fR\nReload the configuration file: outputs\nchange without loss.\n\
             .TP\n\\fBSIGTERM, SIGINT\\fR\nStop: every open flow ends.\n"
        );
        assert_eq!(
            manual_section(&h.manual[1].1),
            ".TP\n\\fB0\\fR\nSuccess.\n.TP\n\\fB3\\fR\nThis kernel lacks a hook.\n"
        );
        assert_eq!(
            manual_section(&h.manual[2].1),
            ".PP\nOne TOML file with sections.\nEvery key is optional.\n.PP\nA second paragraph.\n"
        );
        assert_eq!(
            manual_section(&h.manual[3].1),
            ".PP\nValidate a file:\n.RS\n.nf\nflow-agent check-config /etc/flow-agent/config.toml\n.fi\n.RE\n"
        );
    }

    #[test]
    fn short_help_after_text_is_not_an_option() {
        let text =
            format!("{TOP}\nExit status: 0 ok, 2 usage error.\n`flow-agent --help` prints more.\n");
        let h = Help::parse(&text);
        assert_eq!(h.section("Options").len(), 3);
        assert_eq!(h.section("Options")[2].description, "Print version");
        assert!(h.manual.is_empty());
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
