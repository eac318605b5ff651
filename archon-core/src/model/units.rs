//! Parsing of the human units users type: durations (`30s`, `5m`, `1h30m`), CPU
//! (`500m`, `0.5`, `2`) and sizes (`256MiB`, `1G`, `512k`). Errors say what was given
//! and the accepted form, so the CLI and spec files can show them as they are.

use std::time::Duration;

/// A value that is not in the accepted form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not {what} (try {example})")]
pub struct UnitError {
    /// What was given.
    pub input: String,
    /// What was expected ("a duration", "a CPU amount", "a size").
    pub what: &'static str,
    /// Examples of the accepted form.
    pub example: &'static str,
}

/// Parses a duration such as `30s`, `5m`, `1h30m` or `250ms`.
pub fn parse_duration(input: &str) -> Result<Duration, UnitError> {
    let err = || UnitError { input: input.to_owned(), what: "a duration", example: "30s, 5m, 1h30m, 250ms" };
    let s = input.trim();
    if s.is_empty() || s.starts_with('-') {
        return Err(err());
    }
    humantime::parse_duration(s).map_err(|_| err())
}

/// Formats a duration compactly (`1m 30s`).
pub fn format_duration(d: Duration) -> String {
    humantime::format_duration(Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))).to_string()
}

/// Parses a CPU amount into millicores: `500m` (millicores), `0.5` or `2` (cores).
pub fn parse_cpu(input: &str) -> Result<u64, UnitError> {
    let err = || UnitError { input: input.to_owned(), what: "a CPU amount", example: "500m, 0.5, 2" };
    let s = input.trim();
    if let Some(m) = s.strip_suffix('m') {
        return m.trim().parse::<u64>().map_err(|_| err());
    }
    let cores: f64 = s.parse().map_err(|_| err())?;
    if !cores.is_finite() || !(0.0..=1.0e9).contains(&cores) {
        return Err(err());
    }
    Ok((cores * 1000.0).round() as u64)
}

/// Formats millicores the way [`parse_cpu`] reads them.
pub fn format_cpu(millis: u64) -> String {
    if millis.is_multiple_of(1000) { format!("{}", millis / 1000) } else { format!("{millis}m") }
}

/// Parses a size in bytes: `256MiB`, `1GiB`, `512k`, `1G`, `100` (bytes).
/// Decimal suffixes (k, M, G, T) are powers of 1000; binary ones (Ki, Mi, Gi, Ti)
/// powers of 1024; a trailing `B` is optional.
pub fn parse_bytes(input: &str) -> Result<u64, UnitError> {
    let err = || UnitError { input: input.to_owned(), what: "a size", example: "256MiB, 1GiB, 512M, 100k" };
    let s = input.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    if num.is_empty() {
        return Err(err());
    }
    let unit = unit.trim();
    let unit = unit.strip_suffix(['B', 'b']).unwrap_or(unit);
    let factor: u64 = match unit {
        "" => 1,
        "k" | "K" => 1_000,
        "M" | "m" => 1_000_000,
        "G" | "g" => 1_000_000_000,
        "T" | "t" => 1_000_000_000_000,
        "Ki" | "ki" => 1 << 10,
        "Mi" | "mi" => 1 << 20,
        "Gi" | "gi" => 1 << 30,
        "Ti" | "ti" => 1 << 40,
        _ => return Err(err()),
    };
    if let Ok(n) = num.parse::<u64>() {
        return n.checked_mul(factor).ok_or_else(err);
    }
    let n: f64 = num.parse().map_err(|_| err())?;
    let bytes = n * factor as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(err());
    }
    Ok(bytes.round() as u64)
}

/// Formats bytes with a binary suffix (`256MiB`).
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] = [("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (name, size) in UNITS {
        if bytes >= size {
            return if bytes.is_multiple_of(size) {
                format!("{}{name}", bytes / size)
            } else {
                format!("{:.1}{name}", bytes as f64 / size as f64)
            };
        }
    }
    format!("{bytes}B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_human_forms_and_reject_garbage() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        let e = parse_duration("5x").unwrap_err();
        assert_eq!(e.to_string(), "\"5x\" is not a duration (try 30s, 5m, 1h30m, 250ms)");
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn cpu_accepts_millicores_and_cores() {
        assert_eq!(parse_cpu("500m").unwrap(), 500);
        assert_eq!(parse_cpu("0.5").unwrap(), 500);
        assert_eq!(parse_cpu("2").unwrap(), 2000);
        assert!(parse_cpu("lots").is_err());
        assert!(parse_cpu("-1").is_err());
        assert_eq!(format_cpu(1500), "1500m");
        assert_eq!(format_cpu(2000), "2");
    }

    #[test]
    fn sizes_accept_decimal_and_binary_suffixes() {
        assert_eq!(parse_bytes("256MiB").unwrap(), 256 << 20);
        assert_eq!(parse_bytes("1G").unwrap(), 1_000_000_000);
        assert_eq!(parse_bytes("512k").unwrap(), 512_000);
        assert_eq!(parse_bytes("100").unwrap(), 100);
        assert_eq!(parse_bytes("1.5GiB").unwrap(), 3 << 29);
        assert!(parse_bytes("MiB").is_err());
        assert!(parse_bytes("12 parsecs").is_err());
        assert_eq!(format_bytes(256 << 20), "256MiB");
    }
}
