//! Values people type and read: sizes (`500M`), durations (`15m`), switches (`on`), and byte
//! counts written for people (`1.5 KiB`). Pure; a leaf that configuration, limits and reports
//! all use.

/// `on`/`off`, `true`/`false`, `yes`/`no`, `1`/`0` (any case).
pub fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// `500M`, `50G`, `1T` (powers of 1024; `K`, `KB`, `KiB` alike) or bytes -> bytes.
pub fn parse_size(v: &str) -> Option<u64> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: u64 = num.parse().ok()?;
    let shift = match unit
        .trim()
        .to_ascii_uppercase()
        .trim_end_matches("IB")
        .trim_end_matches('B')
    {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return None,
    };
    n.checked_mul(1u64 << shift)
}

/// `30s`, `15m`, `1h`, `7d` (or a bare number of seconds; `0` is zero) -> seconds.
pub fn parse_duration(v: &str) -> Option<i64> {
    let v = v.trim();
    let (num, unit) = match v.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => v.split_at(i),
        None => (v, "s"),
    };
    let n: i64 = num.parse().ok()?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    n.checked_mul(scale)
}

/// 1536 -> "1.5 KiB", as a value to format (no string of its own).
pub fn human_bytes(n: u64) -> HumanBytes {
    HumanBytes(n)
}

/// See [`human_bytes`].
pub struct HumanBytes(u64);

impl std::fmt::Display for HumanBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
        let (n, mut v, mut u) = (self.0, self.0 as f64, 0);
        while v >= 1024.0 && u < UNITS.len() - 1 {
            v /= 1024.0;
            u += 1;
        }
        if u == 0 {
            write!(f, "{n} B")
        } else {
            write!(f, "{v:.1} {}", UNITS[u])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_the_usual_units() {
        assert_eq!(parse_duration("30s"), Some(30));
        assert_eq!(parse_duration("15m"), Some(900));
        assert_eq!(parse_duration("1h"), Some(3600));
        assert_eq!(parse_duration("7d"), Some(604_800));
        assert_eq!(parse_duration("0"), Some(0));
        assert_eq!(parse_duration("90"), Some(90));
        for bad in [
            "",
            "h",
            "1w",
            "1.5h",
            "-1h",
            "1h30m",
            "99999999999999999999d",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn sizes_take_powers_of_1024() {
        assert_eq!(parse_size("500M"), Some(500 << 20));
        assert_eq!(parse_size("50G"), Some(50 << 30));
        assert_eq!(parse_size("2GiB"), Some(2 << 30));
        assert_eq!(parse_size("1024"), Some(1024));
        for bad in ["", "G", "5X", "1.5G", "-1G"] {
            assert_eq!(parse_size(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn byte_counts_read_well() {
        assert_eq!(human_bytes(1536).to_string(), "1.5 KiB");
        assert_eq!(human_bytes(12).to_string(), "12 B");
        assert_eq!(human_bytes(212_400_000).to_string(), "202.6 MiB");
    }
}
