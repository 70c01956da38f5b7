//! Calendar dates from Unix time, for the formats that spell a date out: DER's UTCTime (the
//! signing time of `crypto`'s signatures) and the RFC 3339 `publishTime` of `ssm ams-server`.
//! UTC only; no time zones, no leap seconds (as Unix time has none).
//!
//! Why not a crate: the one function needed is a dozen lines of integer arithmetic (Howard
//! Hinnant's `civil_from_days`), and the formats around it are fixed.

/// The proleptic Gregorian date (year, month 1–12, day 1–31) of a count of days since
/// 1970-01-01 (negative before it).
pub fn from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_dated_as_the_gregorian_calendar_dates_them() {
        assert_eq!(from_days(0), (1970, 1, 1));
        assert_eq!(from_days(-1), (1969, 12, 31));
        assert_eq!(from_days(11_016), (2000, 2, 29)); // a leap day of a year divisible by 400
        assert_eq!(from_days(20_790), (2026, 12, 3));
        assert_eq!(from_days(29_219), (2049, 12, 31));
    }
}
