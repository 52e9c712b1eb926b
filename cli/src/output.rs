//! `-o table|json|yaml`: the structured formats print the protos' canonical JSON mapping
//! (or the same document as YAML), so scripts see stable field names.

use serde::Serialize;

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
