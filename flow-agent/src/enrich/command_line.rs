//! A command line as one string a person (or a shell) reads back into the same arguments.
use super::escape::ansi_c_quote;

/// Joins arguments with spaces, quoting each one that a POSIX shell would split or expand:
/// single quotes around it, and `'\''` for a quote inside. Plain arguments stay bare, so the
/// common case reads like what was typed. An argument that is not UTF-8 is written in bash's
/// ANSI-C quoting (`$'...'`, [`super::escape`]), so no byte is lost and bash still reads the
/// line back into the same arguments.
pub fn quote_args<B: AsRef<[u8]>>(args: &[B]) -> String {
    let mut out = String::new();
    for (i, arg) in args.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        match std::str::from_utf8(arg.as_ref()) {
            Ok(s) => quote_into(s, &mut out),
            Err(_) => ansi_c_quote(arg.as_ref(), &mut out),
        }
    }
    out
}

fn needs_quotes(arg: &str) -> bool {
    arg.is_empty()
        || !arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=,+@%^".contains(&b) || !b.is_ascii())
}

fn quote_into(arg: &str, out: &mut String) {
    if !needs_quotes(arg) {
        out.push_str(arg);
        return;
    }
    out.push('\'');
    for c in arg.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
}

#[cfg(test)]
mod tests {
    use super::quote_args;

    #[test]
    fn plain_arguments_stay_bare() {
        assert_eq!(
            quote_args(&["curl", "-s", "http://127.0.0.1:8080/a?b"]),
            "curl -s 'http://127.0.0.1:8080/a?b'"
        );
        assert_eq!(quote_args(&["ls", "-la", "/tmp"]), "ls -la /tmp");
    }

    #[test]
    fn spaces_quotes_and_empty_arguments_are_quoted() {
        assert_eq!(
            quote_args(&["sh", "-c", "echo 'hi' there", ""]),
            "sh -c 'echo '\\''hi'\\'' there' ''"
        );
        assert_eq!(quote_args(&["a\nb"]), "'a\nb'");
        assert_eq!(quote_args(&["$HOME", "*"]), "'$HOME' '*'");
    }

    #[test]
    fn a_shell_reads_the_quoted_line_back_into_the_same_arguments() {
        let args = [
            "printf",
            "%s|",
            "two words",
            "it's",
            "",
            "a\"b",
            "x\\y",
            "$(id)",
            "é",
        ];
        let line = quote_args(&args);
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(&line)
            .output()
            .expect("running /bin/sh");
        let expected: String = args[2..].iter().map(|a| format!("{a}|")).collect();
        assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
    }

    #[test]
    fn arguments_that_are_not_utf8_are_ansi_c_quoted_and_read_back_by_bash() {
        let args: [&[u8]; 5] = [b"printf", b"%s|", b"\xff\xfe", b"a'b\\\xc3", b"ok"];
        let line = quote_args(&args);
        assert_eq!(line, "printf '%s|' $'\\xff\\xfe' $'a\\'b\\\\\\xc3' ok");
        let out = std::process::Command::new("/bin/bash")
            .arg("-c")
            .arg(&line)
            .output()
            .expect("running /bin/bash");
        assert_eq!(out.stdout, b"\xff\xfe|a'b\\\xc3|ok|");
    }
}
