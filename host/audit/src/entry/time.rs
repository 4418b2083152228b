//! RFC 3339 UTC timestamps of audit entries: parsing and ordering them
//! ([`Timestamp`]) and writing them ([`utc_now`], [`format_unix`]). Apart from
//! [`super`] because time syntax is a concern of its own; re-exported there.

use super::EntryError;

/// A point in time as an RFC 3339 UTC timestamp
/// (`YYYY-MM-DDTHH:MM:SS[.fraction]Z`), ordered by the instant it names.
///
/// Only the UTC designator `Z` (upper case, as is `T`) is accepted, so that
/// one instant has few spellings and every entry's time reads the same way
/// in every zone. Seconds may be 60 (a leap second). The fraction has 1 to
/// 9 digits; `…:00.5Z` and `…:00.50Z` name the same instant but are
/// different strings, and the string is what is hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    // Field order is the comparison order.
    year: u16,
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
    second: u8,
    nanos: u32,
}

impl Timestamp {
    /// Parses `s`, or says why it is not an RFC 3339 UTC timestamp.
    pub fn parse(s: &str) -> Result<Timestamp, EntryError> {
        let bad = || EntryError::BadTime(s.to_owned());
        let b = s.as_bytes();
        if b.len() < 20 {
            return Err(bad());
        }
        let num = |range: std::ops::Range<usize>| -> Result<u32, EntryError> {
            let part = &b[range];
            if part.iter().all(u8::is_ascii_digit) {
                Ok(part.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0')))
            } else {
                Err(bad())
            }
        };
        let sep = |i: usize, c: u8| if b[i] == c { Ok(()) } else { Err(bad()) };
        let year = num(0..4)?;
        sep(4, b'-')?;
        let month = num(5..7)?;
        sep(7, b'-')?;
        let day = num(8..10)?;
        sep(10, b'T')?;
        let hour = num(11..13)?;
        sep(13, b':')?;
        let minute = num(14..16)?;
        sep(16, b':')?;
        let second = num(17..19)?;
        let mut nanos = 0;
        let rest = &b[19..];
        match rest {
            [b'Z'] => {}
            [b'.', fraction @ .., b'Z'] if (1..=9).contains(&fraction.len()) => {
                let digits = num(20..20 + fraction.len())?;
                nanos = digits * 10u32.pow(9 - fraction.len() as u32);
            }
            _ => return Err(bad()),
        }
        let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
        let days_in_month = match month {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if leap => 29,
            2 => 28,
            _ => return Err(bad()),
        };
        if day == 0 || day > days_in_month || hour > 23 || minute > 59 || second > 60 {
            return Err(bad());
        }
        Ok(Timestamp {
            year: year as u16,
            month: month as u8,
            day: day as u8,
            hour: hour as u8,
            minute: minute as u8,
            second: second as u8,
            nanos,
        })
    }
}

/// The current time as an RFC 3339 UTC timestamp with microseconds, e.g.
/// `2025-06-01T12:00:00.123456Z`. A caller may pass any time it likes to
/// [`crate::AuditLog::append`]; this is the usual one.
pub fn utc_now() -> String {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format_unix(since.as_secs(), since.subsec_micros())
}

/// `secs` after 1970-01-01T00:00:00Z (plus `micros`) as RFC 3339 UTC.
pub fn format_unix(secs: u64, micros: u32) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since the epoch (the proleptic Gregorian
    // calendar, in 400-year eras of 146 097 days).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}
