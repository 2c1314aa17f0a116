//! Values as people read them: bytes in binary multiples, joules in kJ and MJ, four significant digits.

/// The factor to divide values by and the unit to show them in, for values up to `max_abs` in `unit`.
pub fn scale(unit: &str, max_abs: f64) -> (f64, String) {
    let (base, suffix) = match unit.split_once('/') {
        Some((base, rest)) => (base, format!("/{rest}")),
        None => (unit, String::new()),
    };
    let steps: &[(f64, &str)] = match base {
        "bytes" => &[(1024f64.powi(4), "TiB"), (1024f64.powi(3), "GiB"), (1024f64.powi(2), "MiB"), (1024.0, "KiB")],
        "J" => &[(1e9, "GJ"), (1e6, "MJ"), (1e3, "kJ")],
        "W" => &[(1e6, "MW"), (1e3, "kW")],
        _ => &[],
    };
    for (factor, name) in steps {
        if max_abs >= *factor {
            return (*factor, format!("{name}{suffix}"));
        }
    }
    (1.0, unit.to_owned())
}

/// A number with four significant digits, without needless zeros (`0.1`, `1234`, `2.5e-7`).
pub fn number(value: f64) -> String {
    if value == 0.0 || !value.is_finite() {
        return format!("{value}");
    }
    let magnitude = value.abs().log10().floor() as i32;
    if !(-4..=9).contains(&magnitude) {
        return format!("{value:.3e}");
    }
    let decimals = (3 - magnitude).max(0) as usize;
    let text = format!("{value:.decimals$}");
    if text.contains('.') { text.trim_end_matches('0').trim_end_matches('.').to_owned() } else { text }
}

/// A value with its unit, scaled (`1.5 MiB/s`, `0.15 J/message`); `missing` for none.
pub fn value(value: Option<f64>, unit: &str) -> String {
    match value {
        None => "missing".into(),
        Some(v) => {
            let (factor, shown) = scale(unit, v.abs());
            let text = number(v / factor);
            if shown.is_empty() { text } else { format!("{text} {shown}") }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_as_people_write_them() {
        assert_eq!(value(Some(1.5 * 1024.0 * 1024.0), "bytes/s"), "1.5 MiB/s");
        assert_eq!(value(Some(0.15), "J/message"), "0.15 J/message");
        assert_eq!(value(Some(4500.0), "J"), "4.5 kJ");
        assert_eq!(value(Some(150.0), "W"), "150 W");
        assert_eq!(value(Some(1234.5678), ""), "1235");
        assert_eq!(value(Some(2.5e-7), "s"), "2.500e-7 s");
        assert_eq!(value(None, "W"), "missing");
        assert_eq!(value(Some(0.0), "cores"), "0 cores");
    }
}
