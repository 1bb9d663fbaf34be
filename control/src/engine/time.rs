//! Times and durations as Docker's JSON has them: Go's `time.Time` in
//! RFC 3339 with nanoseconds (trailing zeros dropped), and `time.Duration`
//! as integer nanoseconds.

/// Go's zero `time.Time`, which Docker prints for a time never set.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Unix milliseconds as Go prints a UTC `time.Time`:
/// `2016-08-18T10:44:24.496Z`, `2016-08-18T10:44:24Z` on a whole second.
pub fn go_time_ms(unix_ms: u64) -> String {
    go_time_nanos(i128::from(unix_ms) * 1_000_000)
}

/// Unix seconds as Go prints a UTC `time.Time`: `2016-08-18T10:44:24Z`.
pub fn go_time_secs(unix_secs: u64) -> String {
    go_time_nanos(i128::from(unix_secs) * 1_000_000_000)
}

fn go_time_nanos(unix_ns: i128) -> String {
    let Ok(t) = ::time::OffsetDateTime::from_unix_timestamp_nanos(unix_ns) else {
        return ZERO_TIME.to_string();
    };
    let mut text = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    if t.nanosecond() != 0 {
        let fraction = format!("{:09}", t.nanosecond());
        text.push('.');
        text.push_str(fraction.trim_end_matches('0'));
    }
    text.push('Z');
    text
}

/// Milliseconds as a Go `time.Duration` (nanoseconds).
pub fn go_duration_nanos(ms: u64) -> i64 {
    i64::try_from(u128::from(ms) * 1_000_000).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_as_go_prints_them() {
        assert_eq!(go_time_secs(0), "1970-01-01T00:00:00Z");
        assert_eq!(go_time_secs(1_471_517_064), "2016-08-18T10:44:24Z");
        assert_eq!(go_time_ms(1_471_517_064_496), "2016-08-18T10:44:24.496Z");
        assert_eq!(go_time_ms(1_471_517_064_400), "2016-08-18T10:44:24.4Z");
        assert_eq!(go_duration_nanos(5_000), 5_000_000_000);
        assert_eq!(go_duration_nanos(u64::MAX), i64::MAX);
    }
}
