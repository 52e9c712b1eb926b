//! The node's clock: adjtimex(2) with no modes set, which only reads the kernel's clock
//! discipline (no privilege needed, nothing changed), and what it answers ([`Timex`]).

/// `STA_UNSYNC`: the clock is not synchronised.
pub const STA_UNSYNC: i32 = 0x0040;
/// `STA_NANO`: `offset` is in nanoseconds, not microseconds.
pub const STA_NANO: i32 = 0x2000;
/// `TIME_ERROR`: the kernel's own verdict that the clock is not synchronised.
pub const TIME_ERROR: i32 = 5;

/// What adjtimex(2) says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timex {
    /// Its return value: the clock state, `TIME_OK` (0) to `TIME_ERROR` (5).
    pub state: i32,
    /// The `STA_*` status bits.
    pub status: i32,
    /// The remaining offset, in µs (ns with `STA_NANO`).
    pub offset: i64,
    /// The maximum error, in µs (the kernel raises it to 16 s while unsynchronised).
    pub max_error_us: i64,
    /// The estimated error, in µs.
    pub est_error_us: i64,
}

impl Timex {
    /// A clock a time daemon keeps: PLL in nanosecond mode, 0.1 ms off, 50 ms of error.
    pub fn synchronised() -> Self {
        Timex {
            state: 0,
            status: 0x2001,
            offset: 100_000,
            max_error_us: 50_000,
            est_error_us: 1_000,
        }
    }

    /// Whether something disciplines the clock (and its error is under `max_error`).
    pub fn is_synchronised(&self, max_error: std::time::Duration) -> bool {
        self.status & STA_UNSYNC == 0
            && self.state != TIME_ERROR
            && (self.max_error_us.max(0) as u128) < max_error.as_micros()
    }

    /// The remaining offset, in milliseconds.
    pub fn offset_ms(&self) -> f64 {
        if self.status & STA_NANO != 0 {
            self.offset as f64 / 1e6
        } else {
            self.offset as f64 / 1e3
        }
    }
}

/// Reads the kernel's clock state.
pub fn read() -> std::io::Result<Timex> {
    // SAFETY: `timex` is a plain C struct for which all-zero bytes are a valid value;
    // `modes == 0` asks the kernel only to fill it in; the pointer is to a live local.
    #[allow(unsafe_code)]
    let (state, t) = unsafe {
        let mut t: libc::timex = std::mem::zeroed();
        t.modes = 0;
        (libc::adjtimex(&mut t), t)
    };
    if state < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // `c_long` is `i64` on the 64-bit targets the agent ships for.
    #[allow(clippy::useless_conversion)]
    Ok(Timex {
        state,
        status: t.status,
        offset: i64::from(t.offset),
        max_error_us: i64::from(t.maxerror),
        est_error_us: i64::from(t.esterror),
    })
}
