//! Reading the command line as Docker's CLI does: an unknown flag is an
//! error in Docker's words (`unknown flag: --bogus`, exit status 125), and
//! nothing runs; everything else is clap's (help, missing values).

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::Parser;

use super::Cli;

/// Docker's exit status for a command line it cannot read.
const FLAG_ERROR_STATUS: i32 = 125;

/// The parsed command line; exits on a bad one.
pub fn parse() -> Cli {
    match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => match flag_error(&e) {
            Some(text) => {
                eprintln!("{text}");
                std::process::exit(FLAG_ERROR_STATUS)
            }
            None => e.exit(),
        },
    }
}

/// Docker's message for an unknown flag, or `None` for other errors:
/// `unknown flag: --bogus` (or `unknown shorthand flag: 'z' in -z`) and
/// where to find the flags.
pub fn flag_error(error: &clap::Error) -> Option<String> {
    if error.kind() != ErrorKind::UnknownArgument {
        return None;
    }
    let Some(ContextValue::String(arg)) = error.get(ContextKind::InvalidArg) else {
        return None;
    };
    let flag = arg.split_once('=').map_or(arg.as_str(), |(f, _)| f);
    let first = if let Some(long) = flag.strip_prefix("--") {
        format!("unknown flag: --{long}")
    } else if let Some(short) = flag.strip_prefix('-') {
        let letter = short.chars().next()?;
        format!("unknown shorthand flag: '{letter}' in {flag}")
    } else {
        return None;
    };
    let command = match error.get(ContextKind::Usage) {
        Some(ContextValue::StyledStr(usage)) => command_path(&usage.to_string()),
        _ => "shoal".to_string(),
    };
    Some(format!("{first}\nSee '{command} --help'."))
}

/// `shoal service create` from clap's `Usage: shoal service create [OPTIONS] ...`.
fn command_path(usage: &str) -> String {
    let line = usage
        .lines()
        .find(|l| l.contains("Usage:"))
        .unwrap_or(usage);
    let words: Vec<&str> = line
        .split_whitespace()
        .skip_while(|w| *w != "Usage:")
        .skip(1)
        .take_while(|w| {
            w.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !w.starts_with('-')
        })
        .collect();
    if words.is_empty() {
        "shoal".into()
    } else {
        words.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn error(line: &str) -> Option<String> {
        let words = line.split_whitespace();
        match Cli::try_parse_from(std::iter::once("shoal").chain(words)) {
            Ok(cli) => panic!("`{line}` parsed: {:?}", cli.command),
            Err(e) => flag_error(&e),
        }
    }

    #[test]
    fn unknown_flags_are_refused_in_dockers_words() {
        assert_eq!(
            error("service create --name x --bogus-flag -- sleep 100").as_deref(),
            Some("unknown flag: --bogus-flag\nSee 'shoal service create --help'.")
        );
        assert_eq!(
            error("node ls --bogus=1").as_deref(),
            Some("unknown flag: --bogus\nSee 'shoal node ls --help'.")
        );
        assert_eq!(
            error("network ls -z").as_deref(),
            Some("unknown shorthand flag: 'z' in -z\nSee 'shoal network ls --help'.")
        );
        assert_eq!(error("node ls extra"), None, "not a flag: clap's message");
    }

    /// What follows the command is the command's, flags included; `--`
    /// still separates.
    #[test]
    fn the_command_keeps_its_own_flags() {
        for (line, command) in [
            (
                "service create --name x sleep --foo 1",
                vec!["sleep", "--foo", "1"],
            ),
            ("service create --name x -- sleep 100", vec!["sleep", "100"]),
            ("service create --name x -- --weird", vec!["--weird"]),
            (
                "service create --name x -q sh -c -x",
                vec!["sh", "-c", "-x"],
            ),
        ] {
            let words = std::iter::once("shoal").chain(line.split_whitespace());
            let cli = Cli::try_parse_from(words).unwrap_or_else(|e| panic!("{line}: {e}"));
            let debug = format!("{:?}", cli.command);
            let expected = format!("command: {command:?}");
            assert!(debug.contains(&expected), "{line}: {debug}");
        }
    }

    /// Every flag says what it does, and help reads as text: no rustdoc
    /// links or code marks.
    #[test]
    fn help_texts_describe_every_flag_in_plain_words() {
        fn walk(cmd: &clap::Command, path: &str, problems: &mut Vec<String>) {
            let path = format!("{path} {}", cmd.get_name());
            for text in [cmd.get_about(), cmd.get_long_about()]
                .into_iter()
                .flatten()
            {
                let text = text.to_string();
                if text.contains('`') || text.contains("[`") {
                    problems.push(format!("{path}: about has code marks: {text}"));
                }
            }
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" || arg.is_hide_set() {
                    continue;
                }
                let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
                if help.trim().is_empty() {
                    problems.push(format!("{path}: --{id} has no description"));
                }
                let long = arg
                    .get_long_help()
                    .map(|h| h.to_string())
                    .unwrap_or_default();
                let values: Vec<String> = arg
                    .get_possible_values()
                    .iter()
                    .filter_map(|v| v.get_help().map(|h| h.to_string()))
                    .collect();
                for text in [&help, &long].into_iter().chain(&values) {
                    if text.contains('`') {
                        problems.push(format!("{path}: --{id}: code marks in `{text}`"));
                    }
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &path, problems);
            }
        }
        let mut problems = Vec::new();
        walk(&Cli::command(), "", &mut problems);
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }
}
