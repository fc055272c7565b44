//! Parsing and printing of the human units the CLI takes and shows (sizes, ages).

use anyhow::bail;

/// Parses docker-style sizes: `1024`, `512k`, `64m`, `1g`, optionally with a trailing `b`.
pub fn parse_size(text: &str) -> anyhow::Result<i64> {
    let lower = text.trim().to_ascii_lowercase();
    let body = lower.strip_suffix('b').unwrap_or(&lower);
    let (digits, mult): (&str, i64) = match body.chars().last() {
        Some('k') => (&body[..body.len() - 1], 1 << 10),
        Some('m') => (&body[..body.len() - 1], 1 << 20),
        Some('g') => (&body[..body.len() - 1], 1 << 30),
        Some('t') => (&body[..body.len() - 1], 1 << 40),
        _ => (body, 1),
    };
    let value: f64 = match digits.parse() {
        Ok(v) if v >= 0.0 && f64::is_finite(v) => v,
        _ => bail!(
            "invalid size {text:?}: use a number with an optional b, k, m, g or t suffix, like 64m"
        ),
    };
    let bytes = value * mult as f64;
    if bytes > i64::MAX as f64 {
        bail!("invalid size {text:?}: too large");
    }
    Ok(bytes as i64)
}

/// Parses `--cpus`: a positive decimal number of CPUs.
pub fn parse_cpus(text: &str) -> anyhow::Result<f64> {
    match text.trim().parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() && v <= 1024.0 => Ok(v),
        _ => bail!("invalid --cpus {text:?}: use a positive number such as 0.5 or 2"),
    }
}

/// Formats bytes like docker: 1.23MB, 512kB, 0B (decimal units).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else if value < 10.0 {
        format!("{value:.2}{}", UNITS[unit])
    } else if value < 100.0 {
        format!("{value:.1}{}", UNITS[unit])
    } else {
        format!("{value:.0}{}", UNITS[unit])
    }
}

/// "5 seconds ago", "3 minutes ago"... from an RFC 3339 time; "" when unknown or unparsable.
pub fn ago(rfc3339: Option<&str>) -> String {
    let Some(text) = rfc3339 else {
        return String::new();
    };
    let Ok(then) = text.parse::<jiff::Timestamp>() else {
        return String::new();
    };
    let secs = (jiff::Timestamp::now().as_second() - then.as_second()).max(0);
    let (n, unit) = match secs {
        0..=59 => (secs, "second"),
        60..=3599 => (secs / 60, "minute"),
        3600..=86_399 => (secs / 3600, "hour"),
        86_400..=2_591_999 => (secs / 86_400, "day"),
        _ => (secs / 2_592_000, "month"),
    };
    let plural = if n == 1 { "" } else { "s" };
    format!("{n} {unit}{plural} ago")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert_eq!(parse_size("64m").unwrap(), 64 << 20);
        assert_eq!(parse_size("64MB").unwrap(), 64 << 20);
        assert_eq!(parse_size("1g").unwrap(), 1 << 30);
        assert_eq!(parse_size("1.5k").unwrap(), 1536);
        let err = parse_size("12q").unwrap_err().to_string();
        assert!(err.contains("12q"), "{err}");
        assert!(parse_size("").is_err());
        assert!(parse_size("-5m").is_err());
    }

    #[test]
    fn cpus() {
        assert_eq!(parse_cpus("0.5").unwrap(), 0.5);
        assert!(parse_cpus("0").is_err());
        assert!(parse_cpus("x").is_err());
    }

    #[test]
    fn human() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1_234_567), "1.23MB");
        assert_eq!(human_size(45_600), "45.6kB");
    }
}
