//! Local time for people: preset save times and device probe times, as
//! the Python server shows them (`strftime` in the machine's time zone),
//! also on a 32-bit Pi whose C library's `time_t` ends in January 2038.

/// `unix_s` as local time in the `strftime` `format` (empty when it
/// cannot be represented).
pub fn local_time(unix_s: f64, format: &str) -> String {
    local_time_within(unix_s, format, libc::time_t::MAX as f64)
}

/// 28 Gregorian years between 1901 and 2099: the same dates fall on the
/// same weekdays (and so under the same daylight-saving rules).
const CYCLE_S: f64 = 10_227.0 * 86_400.0;
/// 2100-01-01 UTC, where that cycle breaks (2100 is not a leap year).
const CYCLE_END_S: f64 = 4_102_444_800.0;

/// [`local_time`] for a C library whose `time_t` ends at `max`. A 32-bit
/// Pi's ends in January 2038, and `as` saturates there: a later time is
/// moved back by whole 28-year cycles into range and its year moved
/// forward again.
fn local_time_within(unix_s: f64, format: &str, max: f64) -> String {
    if !unix_s.is_finite() || unix_s < libc::time_t::MIN as f64 {
        return String::new();
    }
    let mut s = unix_s.floor();
    let mut years = 0;
    while s > max {
        if s >= CYCLE_END_S {
            return String::new();
        }
        s -= CYCLE_S;
        years += 28;
    }
    let t = s as libc::time_t;
    // SAFETY: localtime_r writes only into `tm`, which lives on this stack;
    // strftime writes at most `buf.len()` bytes into `buf`; `fmt` is a
    // NUL-terminated copy of `format`.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            return String::new();
        }
        tm.tm_year += years;
        let Ok(fmt) = std::ffi::CString::new(format) else {
            return String::new();
        };
        let mut buf = [0u8; 64];
        let n = libc::strftime(buf.as_mut_ptr().cast(), buf.len(), fmt.as_ptr(), &tm);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_past_2038_are_told_where_time_t_ends_there() {
        // A 32-bit Pi's C library: time_t ends at 2038-01-19 03:14:07 UTC.
        let max = i32::MAX as f64;
        for t in [
            2_222_222_222.5, // 2040-06-01
            2_147_483_648.0, // a second past the end
            4_102_444_799.0, // 2099-12-31 23:59:59
            1_700_000_000.0, // 2023: in range, unchanged
        ] {
            for f in ["%Y-%m-%d %H:%M", "%H:%M:%S", "%A %j"] {
                assert_eq!(local_time_within(t, f, max), local_time(t, f), "{t} {f}");
            }
        }
        assert_eq!(local_time_within(4_102_444_800.0, "%Y", max), "");
        assert_eq!(local_time(f64::NAN, "%Y"), "");
        assert!(local_time(2_222_222_222.0, "%Y").starts_with("2040"));
    }
}
