//! Local time for people: preset save times and device probe times, as
//! the Python server shows them (`strftime` in the machine's time zone),
//! also on a 32-bit Pi whose C library's `time_t` ends in January 2038.

/// `unix_s` as local time in the `strftime` `format` (empty when it
/// cannot be represented).
pub fn local_time(unix_s: f64, format: &str) -> String {
    #[cfg(all(target_pointer_width = "32", target_env = "gnu"))]
    if let Some(local64) = time64::localtime64_r() {
        return time64::local_time(unix_s, format, local64);
    }
    local_time_within(unix_s, format, libc::time_t::MAX as f64, libc::localtime_r)
}

/// 28 Gregorian years between 1901 and 2099: the same dates fall on the
/// same weekdays (and so under the same daylight-saving rules).
const CYCLE_S: f64 = 10_227.0 * 86_400.0;
/// 2100-01-01 UTC, where that cycle breaks (2100 is not a leap year).
const CYCLE_END_S: f64 = 4_102_444_800.0;

/// `localtime_r` or `gmtime_r`.
type Convert = unsafe extern "C" fn(*const libc::time_t, *mut libc::tm) -> *mut libc::tm;

/// [`local_time`] for a C library whose `time_t` ends at `max`. A 32-bit
/// Pi's ends in January 2038, and `as` saturates there: a later time is
/// moved back by whole 28-year cycles into range and its year moved
/// forward again. The zone's rules are then those of 28 years earlier
/// (an hour off where they changed since, as in São Paulo or Moscow): the
/// fallback for a C library without 64-bit time calls (glibc before 2.34).
fn local_time_within(unix_s: f64, format: &str, max: f64, convert: Convert) -> String {
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
    // SAFETY: `convert` (localtime_r or gmtime_r) writes only into `tm`,
    // which lives on this stack.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if convert(&t, &mut tm).is_null() {
            return String::new();
        }
        tm
    };
    format_tm(tm, years, format)
}

/// `tm` with `years` added, in the `strftime` `format`.
fn format_tm(mut tm: libc::tm, years: libc::c_int, format: &str) -> String {
    tm.tm_year += years;
    let Ok(fmt) = std::ffi::CString::new(format) else {
        return String::new();
    };
    let mut buf = [0u8; 64];
    // SAFETY: strftime writes at most `buf.len()` bytes into `buf`; `fmt`
    // is a NUL-terminated copy of `format`; `tm` is a valid broken-down
    // time on this stack.
    let n = unsafe { libc::strftime(buf.as_mut_ptr().cast(), buf.len(), fmt.as_ptr(), &tm) };
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// glibc 2.34 and later (Debian 12, Raspberry Pi OS bookworm) have 64-bit
/// time calls on 32-bit systems beside the 32-bit ones: with
/// `__localtime64_r`, a time past January 2038 is told under the zone's
/// own rules, as on a 64-bit system. Looked up when first needed, not
/// linked, so the same binary still starts on an older glibc (and falls
/// back to the 28-year shift there).
#[cfg(all(target_pointer_width = "32", target_env = "gnu"))]
mod time64 {
    use std::sync::OnceLock;

    /// glibc's `__localtime64_r(const __time64_t *, struct tm *)`.
    pub type Local64 = unsafe extern "C" fn(*const i64, *mut libc::tm) -> *mut libc::tm;

    pub fn localtime64_r() -> Option<Local64> {
        static FOUND: OnceLock<Option<Local64>> = OnceLock::new();
        *FOUND.get_or_init(|| {
            // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name only
            // looks the symbol up.
            let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"__localtime64_r".as_ptr()) };
            // SAFETY: glibc's `__localtime64_r` has this signature (its
            // `struct tm` is the same as the 32-bit calls').
            (!p.is_null()).then(|| unsafe { std::mem::transmute::<*mut libc::c_void, Local64>(p) })
        })
    }

    pub fn local_time(unix_s: f64, format: &str, local64: Local64) -> String {
        // 64-bit time_t reaches far beyond any time a person saves.
        if !unix_s.is_finite() || unix_s.abs() > 1e15 {
            return String::new();
        }
        let t = unix_s.floor() as i64;
        // SAFETY: `local64` writes only into `tm`, which lives on this stack.
        let tm = unsafe {
            let mut tm: libc::tm = std::mem::zeroed();
            if local64(&t, &mut tm).is_null() {
                return String::new();
            }
            tm
        };
        super::format_tm(tm, 0, format)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_past_2038_are_told_where_time_t_ends_there() {
        // A 32-bit Pi's C library: time_t ends at 2038-01-19 03:14:07 UTC.
        // In UTC (gmtime_r), so the shift is checked in any TZ the test
        // runs under (in a zone whose rules changed since 28 years
        // earlier the shift is an hour off: that is what the 64-bit calls
        // of glibc 2.34 avoid on 32-bit systems).
        let max = i32::MAX as f64;
        let utc =
            |t: f64, f: &str| local_time_within(t, f, libc::time_t::MAX as f64, libc::gmtime_r);
        for t in [
            2_222_222_222.5, // 2040-06-02
            2_147_483_648.0, // a second past the end
            4_102_444_799.0, // 2099-12-31 23:59:59
            1_700_000_000.0, // 2023: in range, unchanged
        ] {
            for f in ["%Y-%m-%d %H:%M", "%H:%M:%S", "%A %j"] {
                assert_eq!(
                    local_time_within(t, f, max, libc::gmtime_r),
                    utc(t, f),
                    "{t} {f}"
                );
            }
        }
        assert_eq!(
            utc(2_222_222_222.5, "%Y-%m-%d %H:%M:%S %A"),
            "2040-06-02 03:57:02 Saturday"
        );
        assert_eq!(
            local_time_within(4_102_444_800.0, "%Y", max, libc::gmtime_r),
            ""
        );
        assert_eq!(local_time(f64::NAN, "%Y"), "");
        assert!(local_time(2_222_222_222.0, "%Y").starts_with("2040"));
    }

    /// On a 32-bit glibc of 2.34 or later the zone's own rules are used
    /// past 2038 (the cross builds' tests run this under qemu).
    #[cfg(all(target_pointer_width = "32", target_env = "gnu"))]
    #[test]
    fn a_32_bit_glibc_tells_times_past_2038_with_its_64_bit_calls() {
        // SAFETY: gnu_get_libc_version returns a static NUL-terminated string.
        let version = unsafe { std::ffi::CStr::from_ptr(libc::gnu_get_libc_version()) };
        let minor: u32 = version
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("2."))
            .and_then(|m| m.split('.').next()?.parse().ok())
            .unwrap_or(0);
        if minor >= 34 {
            let local64 = time64::localtime64_r().expect("glibc >= 2.34 has __localtime64_r");
            let t = 2_222_222_222.0;
            assert_eq!(time64::local_time(t, "%Y", local64), "2040");
        }
    }
}
