//! RFC 3339 instants as the document's `format: date-time` promises them:
//! `2026-12-01T10:00:00Z`, `2026-12-01t10:00:00.250+02:00`, any year from 0000
//! to 9999 and any offset. What to know: nothing looser is accepted (no space for
//! the `T`, no missing offset), so the document and the server agree exactly.

use archon_core::model::Timestamp;

/// Milliseconds since the Unix epoch of an RFC 3339 date-time, or `None` when
/// `text` is not one (a field out of range, a day the month does not have).
pub(crate) fn parse(text: &str) -> Option<Timestamp> {
    let b = text.as_bytes();
    if b.len() < 20 || !matches!(b[10], b'T' | b't') {
        return None;
    }
    let year = digits(b, 0, 4)?;
    let month = digits(b, 5, 2)?;
    let day = digits(b, 8, 2)?;
    let (hour, minute, second) = (digits(b, 11, 2)?, digits(b, 14, 2)?, digits(b, 17, 2)?);
    if [b[4], b[7], b[13], b[16]] != [b'-', b'-', b':', b':'] {
        return None;
    }
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = &b[19..];
    let mut millis = 0i64;
    if let Some(fraction) = rest.strip_prefix(b".") {
        let n = fraction.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        for (i, c) in fraction[..n.min(3)].iter().enumerate() {
            millis += i64::from(c - b'0') * [100, 10, 1][i];
        }
        rest = &fraction[n..];
    }
    let offset_minutes = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (h, m) = (digits(&[*h1, *h2], 0, 2)?, digits(&[*m1, *m2], 0, 2)?);
            if h > 23 || m > 59 {
                return None;
            }
            if *sign == b'-' { -(h * 60 + m) } else { h * 60 + m }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second - offset_minutes * 60;
    Some(Timestamp(seconds * 1_000 + millis))
}

/// `len` ASCII digits at `at` as a number.
fn digits(b: &[u8], at: usize, len: usize) -> Option<i64> {
    let part = b.get(at..at + len)?;
    part.iter().try_fold(0i64, |n, c| c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0')))
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar
/// (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_with_any_offset_and_year_parse_to_the_same_millisecond() {
        assert_eq!(parse("1970-01-01T00:00:00Z"), Some(Timestamp(0)));
        assert_eq!(parse("2026-12-01T10:00:00.250Z"), Some(Timestamp(1_796_119_200_250)));
        assert_eq!(parse("2026-12-01t12:00:00.2509+02:00"), parse("2026-12-01T10:00:00.250Z"));
        assert_eq!(parse("1969-12-31T23:59:59-00:00"), Some(Timestamp(-1_000)));
        assert_eq!(parse("2000-02-29T00:00:00Z"), Some(Timestamp(951_782_400_000)));
        assert!(parse("0001-01-01T00:00:00Z").is_some_and(|t| t.0 < 0));
    }

    #[test]
    fn anything_looser_than_rfc_3339_is_refused() {
        for bad in [
            "",
            "2026-12-01",
            "2026-12-01 10:00:00Z",
            "2026-12-01T10:00:00",
            "2026-13-01T10:00:00Z",
            "2026-02-29T10:00:00Z",
            "2026-12-01T24:00:00Z",
            "2026-12-01T10:00:00.Z",
            "2026-12-01T10:00:00+2:00",
            "2026-12-01T10:00:00+24:00",
            "+2026-12-01T10:00:00Z",
            "2026-12-01T10:00:00Z ",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
