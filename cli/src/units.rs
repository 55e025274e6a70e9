//! Parsing and printing of the quantities on the command line and in tables: byte sizes
//! (`16`, `4k`, `1m`), durations (`50ms`, `2s`), rates and times.

use std::time::Duration;

/// Parses a byte size: a number with an optional binary suffix `k` (KiB), `m` (MiB) or `g`
/// (GiB), case-insensitive, optionally followed by `b` or `ib`: `16`, `4k`, `64KiB`, `1m`.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix("ib").or_else(|| t.strip_suffix('b')).unwrap_or(&t);
    let (digits, shift) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 10),
        Some('m') => (&t[..t.len() - 1], 20),
        Some('g') => (&t[..t.len() - 1], 30),
        _ => (t, 0),
    };
    let n: usize = digits.trim().parse().map_err(|_| format!("{s:?} is not a size like 16, 4k or 1m"))?;
    n.checked_mul(1 << shift).ok_or_else(|| format!("{s:?} is too large"))
}

/// Parses a comma-separated list of sizes: `16,4k,1m`.
pub fn parse_sizes(s: &str) -> Result<Vec<usize>, String> {
    let sizes = s.split(',').map(parse_size).collect::<Result<Vec<_>, _>>()?;
    if sizes.is_empty() {
        return Err("no sizes given".into());
    }
    Ok(sizes)
}

/// Parses a duration: a number (decimals allowed) with a unit `ns`, `us`, `µs`, `ms` or `s`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("{s:?} is not a duration like 50ms or 2s"))?;
    let scale = match unit.trim() {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "" => return Err(format!("{s:?} needs a unit: ns, us, ms or s")),
        u => return Err(format!("unknown unit {u:?} in {s:?}: use ns, us, ms or s")),
    };
    Duration::try_from_secs_f64(n * scale).map_err(|e| format!("{s:?}: {e}"))
}

/// A byte size for people: `16 B`, `4 KiB`, `1 MiB`, `1.5 KiB`.
pub fn size(n: usize) -> String {
    const UNITS: [(usize, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (scale, unit) in UNITS {
        if n >= scale {
            return if n.is_multiple_of(scale) {
                format!("{} {unit}", n / scale)
            } else {
                format!("{:.1} {unit}", n as f64 / scale as f64)
            };
        }
    }
    format!("{n} B")
}

/// A number with three significant digits and an SI prefix: `412 k`, `1.92 M`, `38.6 `.
pub fn si(x: f64) -> String {
    const PREFIXES: [(f64, &str); 4] = [(1e9, "G"), (1e6, "M"), (1e3, "k"), (1.0, "")];
    for (scale, p) in PREFIXES {
        if x.abs() >= scale {
            return format!("{} {p}", three_digits(x / scale));
        }
    }
    format!("{} ", three_digits(x))
}

/// `x` with three significant digits (no exponent).
pub fn three_digits(x: f64) -> String {
    let a = x.abs();
    if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

/// A time in microseconds with three significant digits: `9.12`, `412`, `1.05 ms` past a millisecond.
pub fn micros(us: f64) -> String {
    if us >= 1000.0 {
        format!("{} ms", three_digits(us / 1000.0))
    } else {
        format!("{} µs", three_digits(us))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_sizes("16,4k,1m").unwrap(), [16, 4096, 1 << 20]);
        assert_eq!(parse_size("64KiB").unwrap(), 64 << 10);
        assert_eq!(parse_size("2MB").unwrap(), 2 << 20);
        assert_eq!(parse_size(" 0 ").unwrap(), 0);
        assert!(parse_size("k").is_err());
        assert!(parse_size("1.5k").is_err());
        assert!(parse_sizes("16,,1k").is_err());
        assert_eq!(size(16), "16 B");
        assert_eq!(size(1 << 20), "1 MiB");
        assert_eq!(size(1536), "1.5 KiB");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("50ms").unwrap(), Duration::from_millis(50));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("250us").unwrap(), Duration::from_micros(250));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5 min").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn numbers() {
        assert_eq!(si(1_920_000.0), "1.92 M");
        assert_eq!(si(412_345.0), "412 k");
        assert_eq!(si(38.6), "38.6 ");
        assert_eq!(micros(9.123), "9.12 µs");
        assert_eq!(micros(1234.0), "1.23 ms");
    }
}
