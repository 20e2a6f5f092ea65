//! Value types with units: [`Dur`] (Go-style durations, as Kratos writes them) and
//! [`ByteSize`] (`19MiB`). Both read and write the text form, so the printed configuration
//! and the environment overlay use the same spelling as the YAML file.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// A duration written the Go way, as Kratos does: `1h`, `15m`, `1h30m`, `500ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl Dur {
    pub const fn secs(s: u64) -> Dur {
        Dur(Duration::from_secs(s))
    }

    pub const fn hours(h: u64) -> Dur {
        Dur(Duration::from_secs(h * 3600))
    }

    pub fn parse(s: &str) -> Option<Dur> {
        let s = s.trim();
        if s.is_empty() {
            return None;
        }
        if s == "0" {
            return Some(Dur(Duration::ZERO));
        }
        let mut total = Duration::ZERO;
        let mut rest = s;
        while !rest.is_empty() {
            let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
            let (num, tail) = rest.split_at(num_end);
            let value: f64 = num.parse().ok()?;
            let unit_end = tail
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(tail.len());
            let (unit, next) = tail.split_at(unit_end);
            let secs = match unit {
                "ns" => 1e-9,
                "us" | "µs" => 1e-6,
                "ms" => 1e-3,
                "s" => 1.0,
                "m" => 60.0,
                "h" => 3600.0,
                _ => return None,
            };
            total += Duration::try_from_secs_f64(value * secs).ok()?;
            rest = next;
        }
        Some(Dur(total))
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs();
        if self.0.subsec_nanos() != 0 {
            return write!(f, "{}ms", self.0.as_millis());
        }
        let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
        let mut out = String::new();
        if h > 0 {
            out += &format!("{h}h");
        }
        if m > 0 {
            out += &format!("{m}m");
        }
        if s > 0 || out.is_empty() {
            out += &format!("{s}s");
        }
        f.write_str(&out)
    }
}

impl Serialize for Dur {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Dur::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "invalid duration {s:?}: expected a duration such as \"30s\", \"15m\", \"24h\" or \"1h30m\""
            ))
        })
    }
}

/// A size in bytes written with a unit: `19MiB`, `128MB`, `1GiB`, `512KiB`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub const fn mib(n: u64) -> ByteSize {
        ByteSize(n << 20)
    }

    pub fn parse(s: &str) -> Option<ByteSize> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: u64 = num.parse().ok()?;
        let mult: u64 = match unit.trim() {
            "" | "B" => 1,
            "KB" | "kB" => 1000,
            "KiB" => 1 << 10,
            "MB" => 1000 * 1000,
            "MiB" => 1 << 20,
            "GB" => 1000 * 1000 * 1000,
            "GiB" => 1 << 30,
            _ => return None,
        };
        n.checked_mul(mult).map(ByteSize)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let b = self.0;
        let text = if b.is_multiple_of(1 << 30) && b > 0 {
            format!("{}GiB", b >> 30)
        } else if b.is_multiple_of(1 << 20) && b > 0 {
            format!("{}MiB", b >> 20)
        } else if b.is_multiple_of(1 << 10) && b > 0 {
            format!("{}KiB", b >> 10)
        } else {
            format!("{b}B")
        };
        s.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ByteSize::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "invalid size {s:?}: expected a size such as \"19MiB\", \"128MB\" or \"1GiB\""
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_the_go_way() {
        assert_eq!(
            Dur::parse("1h30m").map(|d| d.0),
            Some(Duration::from_secs(5400))
        );
        assert_eq!(
            Dur::parse("500ms").map(|d| d.0),
            Some(Duration::from_millis(500))
        );
        assert_eq!(Dur::parse("24h").map(|d| d.to_string()), Some("24h".into()));
        assert!(Dur::parse("1 day").is_none());
        assert!(Dur::parse("").is_none());
    }

    #[test]
    fn sizes_parse_with_binary_and_decimal_units() {
        assert_eq!(ByteSize::parse("19MiB"), Some(ByteSize::mib(19)));
        assert_eq!(ByteSize::parse("128MB"), Some(ByteSize(128_000_000)));
        assert!(ByteSize::parse("12 parsecs").is_none());
    }
}
