//! `-o table|json|yaml`: the structured formats print the protos' canonical JSON mapping
//! (or the same document as YAML), so scripts see stable field names.

use std::borrow::Cow;

use serde::Serialize;

/// `text` safe to print on a terminal: every control character but line breaks and tabs
/// written as `\u{…}`, so a string from a node (a process or mount named with escape
/// codes, a kernel line) cannot move the cursor, clear the screen or retitle the window.
pub fn escaped(text: &str) -> Cow<'_, str> {
    escape(text, |c| c.is_control() && !matches!(c, '\n' | '\t'))
}

/// `text` as one line of a table: every control character, line breaks too, escaped.
pub fn one_line(text: &str) -> Cow<'_, str> {
    escape(text, char::is_control)
}

fn escape(text: &str, bad: fn(char) -> bool) -> Cow<'_, str> {
    if !text.chars().any(bad) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .map(|c| {
                if bad(c) {
                    c.escape_unicode().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Human-readable tables.
    Table,
    /// JSON (proto3 JSON mapping).
    Json,
    /// YAML (the same document as JSON).
    Yaml,
}

/// Prints a value as JSON or YAML; `false` for `Format::Table` (the caller prints a table).
pub fn structured<T: Serialize>(format: Format, value: &T) -> anyhow::Result<bool> {
    match format {
        Format::Table => Ok(false),
        Format::Json => {
            println!("{}", serde_json::to_string_pretty(value)?);
            Ok(true)
        }
        Format::Yaml => {
            print!("{}", serde_saphyr::to_string(value)?);
            Ok(true)
        }
    }
}

/// Prints one event of a stream: a JSON line, or a YAML document; `false` for
/// `Format::Table` (the caller prints a line of its own).
pub fn streamed<T: Serialize>(format: Format, value: &T) -> anyhow::Result<bool> {
    match format {
        Format::Table => Ok(false),
        Format::Json => {
            println!("{}", serde_json::to_string(value)?);
            Ok(true)
        }
        Format::Yaml => {
            print!("---\n{}", serde_saphyr::to_string(value)?);
            Ok(true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_never_reach_the_terminal() {
        assert_eq!(escaped("plain\nlines\tand tabs"), "plain\nlines\tand tabs");
        assert_eq!(escaped("\u{1b}[2Jcleared"), "\\u{1b}[2Jcleared");
        assert_eq!(escaped("title\u{7}\u{9b}"), "title\\u{7}\\u{9b}");
        assert_eq!(one_line("two\nlines"), "two\\u{a}lines");
        assert!(matches!(one_line("fine"), Cow::Borrowed(_)));
    }
}
