//! Values as Compose writes them: durations (`1m30s`, Go's syntax), sizes
//! (`512M`, `1.5g`, binary units as Docker reads them), CPUs (`0.5`), file
//! modes (`0440` is octal), and commands written as one string (split as a
//! shell would, without expansion).

use std::time::Duration;

/// Parses a Go duration: a sequence of decimal numbers with units `ns`,
/// `us` (or `µs`), `ms`, `s`, `m`, `h`, such as `1m30s` or `1.5h`; `0`
/// alone is zero.
pub fn parse_duration(text: &str) -> Option<Duration> {
    if text == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = text;
    let mut total: u128 = 0;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..number_len];
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let nanos_per: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        total = total.checked_add(scaled(number, nanos_per)?)?;
    }
    let secs = u64::try_from(total / 1_000_000_000).ok()?;
    Some(Duration::new(secs, (total % 1_000_000_000) as u32))
}

/// `number * unit`, with `number` a decimal like `1.5`, truncated to an
/// integer.
fn scaled(number: &str, unit: u128) -> Option<u128> {
    let (whole, fraction) = match number.split_once('.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (number, ""),
    };
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    if !whole.bytes().all(|b| b.is_ascii_digit()) || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    // Digits past the 18th cannot change a result in nanoseconds or bytes.
    let fraction = &fraction[..fraction.len().min(18)];
    let fraction_value: u128 = if fraction.is_empty() {
        0
    } else {
        fraction.parse().ok()?
    };
    let fraction_part = fraction_value.checked_mul(unit)? / 10u128.pow(fraction.len() as u32);
    whole.checked_mul(unit)?.checked_add(fraction_part)
}

/// Parses a size in bytes as Docker reads memory sizes: a number (decimals
/// allowed), an optional space, an optional unit `k`, `m`, `g`, `t`, `p`
/// (powers of 1024, any case), an optional `i` and an optional `b`.
pub fn parse_bytes(text: &str) -> Option<u64> {
    let number_len = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(number_len);
    let unit = unit.strip_prefix(' ').unwrap_or(unit).to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let power = match unit {
        "" => 0,
        "k" => 1,
        "m" => 2,
        "g" => 3,
        "t" => 4,
        "p" => 5,
        _ => return None,
    };
    if number.is_empty() || number.matches('.').count() > 1 {
        return None;
    }
    u64::try_from(scaled(number, 1024u128.pow(power))?).ok()
}

/// Parses a CPU count (`0.5`, `2`) into billionths of a CPU, refusing more
/// than nine decimals as Docker does.
pub fn parse_nano_cpus(text: &str) -> Option<u64> {
    let fraction = text.split_once('.').map(|(_, f)| f).unwrap_or("");
    if fraction.len() > 9 {
        return None;
    }
    u64::try_from(scaled(text, 1_000_000_000)?).ok()
}

/// Parses a file mode: `0440` and `0o440` are octal, `288` is decimal (a
/// YAML 1.1 reader turns an unquoted `0440` into 288).
pub fn parse_mode(text: &str) -> Option<u32> {
    let mode = if let Some(octal) = text.strip_prefix("0o") {
        u32::from_str_radix(octal, 8).ok()?
    } else if text.len() > 1 && text.starts_with('0') {
        u32::from_str_radix(&text[1..], 8).ok()?
    } else {
        text.parse().ok()?
    };
    (mode <= 0o7777).then_some(mode)
}

/// Parses a mode written in octal digits, as tmpfs modes are (`1777`,
/// `0o1777`).
pub fn parse_octal_mode(text: &str) -> Option<u32> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    let mode = u32::from_str_radix(digits, 8).ok()?;
    (!digits.is_empty() && mode <= 0o7777).then_some(mode)
}

/// Why a command string cannot be split into words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SplitError {
    UnclosedQuote(char),
    TrailingBackslash,
}

/// Splits a command written as one string into its words, as a POSIX shell
/// would without expanding anything: `'...'` literal, `"..."` with `\"`,
/// `\\`, `\$` and `` \` `` escapes, `\` outside quotes escaping the next
/// character.
pub fn split_words(text: &str) -> Result<Vec<String>, SplitError> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(SplitError::UnclosedQuote('\'')),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err(SplitError::UnclosedQuote('"')),
                        },
                        Some(c) => word.push(c),
                        None => return Err(SplitError::UnclosedQuote('"')),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('\n') => {}
                    Some(c) => word.push(c),
                    None => return Err(SplitError::TrailingBackslash),
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn durations_written_as_go_writes_them_read_back(h in 0u64..1000, m in 0u64..60, s in 0u64..60, ms in 0u64..1000) {
            let text = format!("{h}h{m}m{s}s{ms}ms");
            let expected = Duration::from_millis(((h * 60 + m) * 60 + s) * 1000 + ms);
            prop_assert_eq!(parse_duration(&text), Some(expected));
        }

        #[test]
        fn sizes_scale_by_powers_of_1024(n in 0u64..1_000_000, unit in 0usize..4) {
            let (suffix, factor) = [("", 1u64), ("k", 1 << 10), ("m", 1 << 20), ("g", 1 << 30)][unit];
            prop_assert_eq!(parse_bytes(&format!("{n}{suffix}")), Some(n * factor));
        }

        #[test]
        fn no_text_makes_a_reader_panic(text in "\\PC{0,40}") {
            let _ = (parse_duration(&text), parse_bytes(&text), parse_nano_cpus(&text), parse_mode(&text), parse_octal_mode(&text), split_words(&text));
        }
    }

    #[test]
    fn durations_read_as_go_writes_them() {
        let ms = Duration::from_millis;
        let cases = [
            ("0", Some(Duration::ZERO)),
            ("10s", Some(ms(10_000))),
            ("1m30s", Some(ms(90_000))),
            ("1.5h", Some(ms(5_400_000))),
            ("2h45m", Some(ms(9_900_000))),
            ("300ms", Some(ms(300))),
            ("1m0.5s", Some(ms(60_500))),
            ("2us", Some(Duration::from_micros(2))),
            ("2µs", Some(Duration::from_micros(2))),
            ("7ns", Some(Duration::from_nanos(7))),
            (".5s", Some(ms(500))),
            ("10", None),
            ("", None),
            ("s", None),
            ("1d", None),
            ("-1s", None),
            ("1.2.3s", None),
            ("10 s", None),
            ("99999999999999999999999h", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_duration(text), expected, "{text}");
        }
    }

    #[test]
    fn sizes_read_as_docker_reads_memory() {
        let cases = [
            ("1024", Some(1024)),
            ("50M", Some(50 << 20)),
            ("50m", Some(50 << 20)),
            ("1g", Some(1 << 30)),
            ("1gb", Some(1 << 30)),
            ("1GiB", Some(1 << 30)),
            ("1.5G", Some(3 << 29)),
            ("100k", Some(102_400)),
            ("2 MB", Some(2 << 20)),
            ("10b", Some(10)),
            ("1x", None),
            ("M", None),
            ("", None),
            ("1.2.3m", None),
            ("99999999999p", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_bytes(text), expected, "{text}");
        }
    }

    #[test]
    fn cpus_and_modes() {
        assert_eq!(parse_nano_cpus("0.5"), Some(500_000_000));
        assert_eq!(parse_nano_cpus("0.001"), Some(1_000_000));
        assert_eq!(parse_nano_cpus("2"), Some(2_000_000_000));
        assert_eq!(parse_nano_cpus("0.0000000001"), None);
        assert_eq!(parse_nano_cpus("-1"), None);
        assert_eq!(parse_nano_cpus("half"), None);
        assert_eq!(parse_mode("0440"), Some(0o440));
        assert_eq!(parse_mode("0o440"), Some(0o440));
        assert_eq!(parse_mode("288"), Some(0o440));
        assert_eq!(parse_mode("0"), Some(0));
        assert_eq!(parse_mode("0999"), None);
        assert_eq!(parse_mode("077777"), None);
        assert_eq!(parse_mode("rw"), None);
        assert_eq!(parse_octal_mode("1777"), Some(0o1777));
        assert_eq!(parse_octal_mode("0o700"), Some(0o700));
        assert_eq!(parse_octal_mode("800"), None);
        assert_eq!(parse_octal_mode(""), None);
    }

    #[test]
    fn commands_split_like_a_shell_without_expansion() {
        let words = |text: &str| split_words(text).unwrap();
        assert_eq!(
            words("bundle exec thin -p 3000"),
            ["bundle", "exec", "thin", "-p", "3000"]
        );
        assert_eq!(
            words("  sh -c 'echo $HOME && ls'  "),
            ["sh", "-c", "echo $HOME && ls"]
        );
        assert_eq!(
            words(r#"echo "a \"b\" \$c" d\ e ''"#),
            ["echo", "a \"b\" $c", "d e", ""]
        );
        assert_eq!(words(r#"x"y"'z'"#), ["xyz"]);
        assert!(words("").is_empty());
        assert_eq!(
            split_words("echo 'open"),
            Err(SplitError::UnclosedQuote('\''))
        );
        assert_eq!(
            split_words("echo \"open"),
            Err(SplitError::UnclosedQuote('"'))
        );
        assert_eq!(split_words("echo \\"), Err(SplitError::TrailingBackslash));
    }
}
