//! `/proc/pressure/{cpu,memory,io}`: pressure stall information, in the report's shape.
//!
//! ```text
//! some avg10=0.82 avg60=1.49 avg300=2.16 total=16302043
//! full avg10=0.00 avg60=0.00 avg300=0.00 total=0
//! ```
//!
//! Each line goes through procfs-core's record parser; what is left here is what it does
//! not do: the `cpu` file of kernels before 5.13 has no `full` line (procfs-core's
//! `CpuPressure` needs one), and its `f32` averages are given back as the two decimals
//! the kernel prints.

use nodemedic_proto::v1::Psi;
use procfs_core::{PressureRecord, parse_pressure_record};

use super::ParseError;

/// Parses a pressure file. A missing `full` line leaves the `full_*` fields at zero.
pub fn parse(text: &str) -> Result<Psi, ParseError> {
    let mut some = None;
    let mut full = None;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        // procfs-core slices the line after its five-byte `some `/`full ` head and panics
        // on a shorter line (or one whose fifth byte is inside a character): the head is
        // checked here first.
        let slot = match line.get(..5) {
            Some("some ") => &mut some,
            Some("full ") => &mut full,
            _ => {
                return Err(ParseError::new(
                    i + 1,
                    format!("not a \"some\" or \"full\" record: {line:?}"),
                ));
            }
        };
        let record = parse_pressure_record(line)
            .map_err(|e| ParseError::new(i + 1, format!("{e}: {line:?}")))?;
        *slot = Some(record);
    }
    let some = some.ok_or_else(|| ParseError::new(1, "no \"some\" line"))?;
    let (some_avg10, some_avg60, some_avg300) = averages(&some);
    let (full_avg10, full_avg60, full_avg300) = full.as_ref().map_or((0.0, 0.0, 0.0), averages);
    Ok(Psi {
        some_avg10,
        some_avg60,
        some_avg300,
        full_avg10,
        full_avg60,
        full_avg300,
    })
}

/// The three averages as the kernel printed them (two decimals), not `f32`'s nearest.
fn averages(r: &PressureRecord) -> (f64, f64, f64) {
    let printed = |v: f32| (f64::from(v) * 100.0).round() / 100.0;
    (printed(r.avg10), printed(r.avg60), printed(r.avg300))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_some_and_full() {
        let psi = parse(
            "some avg10=0.82 avg60=1.49 avg300=2.16 total=16302043\n\
             full avg10=0.10 avg60=0.20 avg300=0.30 total=12\n",
        )
        .unwrap();
        assert_eq!(psi.some_avg10, 0.82);
        assert_eq!(psi.some_avg60, 1.49);
        assert_eq!(psi.some_avg300, 2.16);
        assert_eq!(psi.full_avg60, 0.20);
    }

    #[test]
    fn old_cpu_file_has_no_full_line() {
        let psi = parse("some avg10=5.00 avg60=1.00 avg300=0.50 total=1\n").unwrap();
        assert_eq!(psi.some_avg10, 5.0);
        assert_eq!(psi.full_avg10, 0.0);
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse("").is_err());
        assert_eq!(parse("some avg10=x\n").unwrap_err().line, 1);
        assert!(parse("partial avg10=1\n").is_err());
    }

    /// Found by the fuzz target: procfs-core's record parser panics on these.
    #[test]
    fn short_or_multibyte_heads_are_refused_not_panicked_on() {
        for text in ["some", "full\n", "some\u{e9}avg10=1", "fullé"] {
            let err = parse(text).unwrap_err();
            assert_eq!(err.line, 1, "{text:?}");
            assert!(
                err.reason.contains("not a \"some\""),
                "{text:?}: {}",
                err.reason
            );
        }
    }
}
