//! `/proc/pressure/{cpu,memory,io}`: pressure stall information.
//!
//! ```text
//! some avg10=0.82 avg60=1.49 avg300=2.16 total=16302043
//! full avg10=0.00 avg60=0.00 avg300=0.00 total=0
//! ```

use nodemedic_proto::v1::Psi;

use super::ParseError;

/// Parses a pressure file. A missing `full` line (cpu on kernels before 5.13) leaves the
/// `full_*` fields at zero.
pub fn parse(text: &str) -> Result<Psi, ParseError> {
    let mut psi = Psi::default();
    let mut saw_some = false;
    for (i, line) in text.lines().enumerate() {
        let mut fields = line.split_whitespace();
        let Some(kind) = fields.next() else { continue };
        let (avg10, avg60, avg300) = match kind {
            "some" => {
                saw_some = true;
                (
                    &mut psi.some_avg10,
                    &mut psi.some_avg60,
                    &mut psi.some_avg300,
                )
            }
            "full" => (
                &mut psi.full_avg10,
                &mut psi.full_avg60,
                &mut psi.full_avg300,
            ),
            other => {
                return Err(ParseError::new(
                    i + 1,
                    format!("unknown line kind {other:?}"),
                ));
            }
        };
        for field in fields {
            let (name, value) = field
                .split_once('=')
                .ok_or_else(|| ParseError::new(i + 1, format!("{field:?} is not name=value")))?;
            let slot = match name {
                "avg10" => &mut *avg10,
                "avg60" => &mut *avg60,
                "avg300" => &mut *avg300,
                _ => continue,
            };
            *slot = value
                .parse()
                .map_err(|_| ParseError::new(i + 1, format!("{name}={value:?} is not a number")))?;
        }
    }
    if !saw_some {
        return Err(ParseError::new(1, "no \"some\" line"));
    }
    Ok(psi)
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
}
