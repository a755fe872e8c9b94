//! Numbers as SPL's `tostring` and `round(X, 2)` write them in the anomaly text.
//! Shortest round-trip decimals without exponent; exact half-away-from-zero rounding.

/// Writes `x` as the shortest decimal string that reads back to the same `f64`,
/// with no exponent and no decimal point when it is integral (`2886181`, `4.08`).
pub fn format_number(x: f64) -> String {
    let mut text = String::new();
    write_number(&mut text, x);
    text
}

/// Appends `x` to `text` as [`format_number`] writes it.
pub fn write_number(text: &mut String, x: f64) {
    use std::fmt::Write;
    // Rust's `Display` for f64 is exactly that: shortest round-trip digits, never an exponent.
    // Writing into a String cannot fail.
    let _ = write!(text, "{x}");
}

/// Rounds `x` half away from zero to `decimals` places, deciding on the exact binary value of
/// `x` (so `1.005`, stored as 1.00499999999999989…, rounds down to `1`), and returns the `f64`
/// nearest to the rounded decimal.
pub fn round_half_away_from_zero(x: f64, decimals: u8) -> f64 {
    assert!(decimals <= 22, "10^decimals must be an exact f64");
    if !x.is_finite() {
        return x;
    }
    let scale = 10f64.powi(i32::from(decimals));
    let magnitude = x.abs();
    let scaled = magnitude * scale;
    // Past 2^52 every f64 is an integer: no fraction is left to round.
    if scaled >= 4_503_599_627_370_496.0 {
        return x;
    }
    // `scaled + error` is the exact product (error-free transformation of a product).
    let error = magnitude.mul_add(scale, -scaled);
    let floor = scaled.floor();
    let fraction = scaled - floor; // exact: both lie in the same binade or below it
    // Off a tie the error cannot move the value across it: for `scaled` below 2^52 both
    // `fraction` and 0.5 lie on the grid of `scaled`'s ulp, and `|error|` is at most half of it.
    let units = if fraction == 0.5 {
        if error >= 0.0 { floor + 1.0 } else { floor }
    } else if fraction > 0.5 {
        floor + 1.0
    } else {
        floor
    };
    (units / scale).copysign(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_shortest_round_trip_without_exponent() {
        assert_eq!(format_number(2886181.0), "2886181");
        assert_eq!(format_number(0.5855397618132924), "0.5855397618132924");
        assert_eq!(format_number(4.08), "4.08");
        assert_eq!(format_number(1e21), "1000000000000000000000");
        assert_eq!(format_number(1.5e-7), "0.00000015");
        assert_eq!(format_number(0.0), "0");
        assert_eq!(format_number(-12.5), "-12.5");
        assert_eq!(format_number(0.1 + 0.2), "0.30000000000000004");
    }

    #[test]
    fn rounding_is_half_away_from_zero_on_exact_ties() {
        // 0.125 and 2.375 are exact binary values: real ties.
        assert_eq!(round_half_away_from_zero(0.125, 2), 0.13);
        assert_eq!(round_half_away_from_zero(-0.125, 2), -0.13);
        assert_eq!(round_half_away_from_zero(2.375, 2), 2.38);
        assert_eq!(round_half_away_from_zero(4.625, 2), 4.63);
        assert_eq!(round_half_away_from_zero(2.5, 0), 3.0);
        assert_eq!(round_half_away_from_zero(-2.5, 0), -3.0);
    }

    #[test]
    fn rounding_decides_on_the_exact_binary_value() {
        // 1.005 is stored as 1.00499999999999989…: below the tie, rounds down,
        // although 1.005 * 100 evaluates to 100.49999999999999 or 100.5 depending on how.
        assert_eq!(round_half_away_from_zero(1.005, 2), 1.0);
        // 1.015 is stored as 1.01499999999999990…: down as well.
        assert_eq!(round_half_away_from_zero(1.015, 2), 1.01);
        // 1.025 is stored as 1.02499999999999991…: down.
        assert_eq!(round_half_away_from_zero(1.025, 2), 1.02);
        // 4.355 is stored as 4.35500000000000042…: above the tie, rounds up.
        assert_eq!(round_half_away_from_zero(4.355, 2), 4.36);
        // 0.285 * 100 = 28.499999999999996 in f64 while 0.285 is 0.28499999999999998…: down.
        assert_eq!(round_half_away_from_zero(0.285, 2), 0.28);
    }

    #[test]
    fn rounding_keeps_ordinary_values() {
        assert_eq!(round_half_away_from_zero(4.0799999, 2), 4.08);
        assert_eq!(round_half_away_from_zero(17.0, 2), 17.0);
        assert_eq!(round_half_away_from_zero(123456.789, 2), 123456.79);
        assert_eq!(round_half_away_from_zero(1e300, 2), 1e300);
        assert!(round_half_away_from_zero(f64::NAN, 2).is_nan());
        assert_eq!(round_half_away_from_zero(f64::INFINITY, 2), f64::INFINITY);
    }
}
