//! What the writer and the reader of a history agree on: the format's name, its limits,
//! and how an integer is written and read (as a JSON number, or a string holding one).

/// The `format` this module writes and reads.
pub const FORMAT: &str = "nodemedic.history.v1";
/// Most reports one file may claim (a week at one a second).
pub(super) const MAX_REPORTS: u64 = 7 * 86_400;
/// Largest array index a path may hold.
pub(super) const MAX_INDEX: usize = 1 << 16;

pub(super) fn write_int(out: &mut Vec<u8>, value: i128, quoted: bool) {
    if quoted {
        out.push(b'"');
    }
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    if quoted {
        out.push(b'"');
    }
}

/// An integer as JSON text, bare or in a string, written the one way it is always written
/// (no sign on zero, no leading zeros), so it reads back the same.
pub(super) fn parse_int(token: &[u8]) -> Option<(i128, bool)> {
    let (digits, quoted) = match token {
        [b'"', inner @ .., b'"'] => (inner, true),
        _ => (token, false),
    };
    let (negative, unsigned) = match digits {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, digits),
    };
    let leading_zero = unsigned.first() == Some(&b'0') && (unsigned.len() > 1 || negative);
    if unsigned.is_empty() || unsigned.len() > 36 || leading_zero {
        return None;
    }
    let mut value = 0i128;
    for &d in unsigned {
        if !d.is_ascii_digit() {
            return None;
        }
        value = value * 10 + i128::from(d - b'0');
    }
    Some((if negative { -value } else { value }, quoted))
}
