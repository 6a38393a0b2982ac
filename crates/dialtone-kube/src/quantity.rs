//! Resource quantities (`500m`, `2Gi`, `1e3`), parsed as upstream's `resource.Quantity` is.

/// The quantity in base units (cores, bytes, pods), or `None` when it is malformed.
pub fn parse(text: &str) -> Option<f64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    if number.is_empty() || number.matches('.').count() > 1 {
        return None;
    }
    let number: f64 = number.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exponent => {
            let exponent = exponent.strip_prefix(['e', 'E'])?;
            10f64.powi(exponent.parse().ok()?)
        }
    };
    Some(number * factor)
}

pub const MALFORMED: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

#[cfg(test)]
mod tests {
    #[test]
    fn suffixes_scale_as_upstream() {
        assert_eq!(super::parse("500m"), Some(0.5));
        assert_eq!(super::parse("2Gi"), Some(2.0 * 1024.0 * 1024.0 * 1024.0));
        assert_eq!(super::parse("1e3"), Some(1000.0));
        assert_eq!(super::parse("1.5"), Some(1.5));
        assert_eq!(super::parse("abc"), None);
        assert_eq!(super::parse("1Zi"), None);
    }
}
