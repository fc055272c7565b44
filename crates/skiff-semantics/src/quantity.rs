//! `resource.Quantity`: an exact decimal number with a suffix. Parsed once, here, for the API
//! server's validation, the scheduler's fit checks and the agent's cgroup and eviction limits.
//!
//! Accepted: an optional sign, digits with at most one `.`, then one of the decimal SI suffixes
//! `n u m "" k M G T P E`, the binary suffixes `Ki Mi Gi Ti Pi Ei`, or a decimal exponent
//! `e`/`E` followed by an integer. No floating point: the value is kept as `mantissa · 10^exp`.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// Why a string is not a quantity (upstream's three parse errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")]
    Format,
    #[error("unable to parse numeric part of quantity")]
    Numeric,
    #[error("unable to parse quantity's suffix")]
    Suffix,
}

/// An exact quantity: `mantissa · 10^exp`, normalised so the mantissa has no trailing zeros.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Quantity {
    mantissa: i128,
    exp: i32,
}

/// Exponents beyond this are refused: no real quantity is near, and it bounds every loop.
const MAX_EXP: i32 = 1000;

fn pow10(n: u32) -> Option<i128> {
    10i128.checked_pow(n)
}

impl Quantity {
    pub const ZERO: Quantity = Quantity {
        mantissa: 0,
        exp: 0,
    };

    /// `mantissa · 10^exp`, exactly.
    pub fn new(mantissa: i128, exp: i32) -> Quantity {
        let (mut mantissa, mut exp) = (mantissa, exp);
        if mantissa == 0 {
            return Quantity::ZERO;
        }
        while mantissa % 10 == 0 {
            mantissa /= 10;
            exp += 1;
        }
        Quantity { mantissa, exp }
    }

    /// Parses a quantity. Surrounding whitespace is ignored (as skiff always did).
    pub fn parse(text: &str) -> Result<Quantity, QuantityError> {
        let t = text.trim();
        let (neg, rest) = match t.as_bytes().first() {
            Some(b'-') => (true, &t[1..]),
            Some(b'+') => (false, &t[1..]),
            _ => (false, t),
        };
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, suffix) = rest.split_at(end);
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(QuantityError::Format);
        }
        let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
        let mut mantissa: i128 = 0;
        let mut exp: i32 = 0;
        for (i, c) in int_part.bytes().chain(frac_part.bytes()).enumerate() {
            let d = i128::from(c - b'0');
            if i >= int_part.len() {
                // Trailing fractional zeros add nothing; skip them so they cannot overflow.
                if d == 0
                    && frac_part.as_bytes()[i - int_part.len()..]
                        .iter()
                        .all(|b| *b == b'0')
                {
                    break;
                }
                exp -= 1;
            }
            mantissa = mantissa
                .checked_mul(10)
                .and_then(|m| m.checked_add(d))
                .ok_or(QuantityError::Numeric)?;
        }
        let mut binary: i128 = 1;
        match suffix {
            "" => {}
            "n" => exp -= 9,
            "u" => exp -= 6,
            "m" => exp -= 3,
            "k" => exp += 3,
            "M" => exp += 6,
            "G" => exp += 9,
            "T" => exp += 12,
            "P" => exp += 15,
            "E" => exp += 18,
            "Ki" => binary = 1 << 10,
            "Mi" => binary = 1 << 20,
            "Gi" => binary = 1 << 30,
            "Ti" => binary = 1 << 40,
            "Pi" => binary = 1 << 50,
            "Ei" => binary = 1 << 60,
            s if s.len() > 1 && s.starts_with(['e', 'E']) => {
                let digits = &s[1..];
                let unsigned = digits.strip_prefix(['+', '-']).unwrap_or(digits);
                if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(QuantityError::Format);
                }
                let e: i32 = digits.parse().map_err(|_| QuantityError::Suffix)?;
                if !(-MAX_EXP..=MAX_EXP).contains(&e) {
                    return Err(QuantityError::Suffix);
                }
                exp += e;
            }
            s if s.bytes().all(|b| b"eEinumkKMGTP+-0123456789".contains(&b)) => {
                return Err(QuantityError::Suffix)
            }
            _ => return Err(QuantityError::Format),
        }
        let mantissa = mantissa.checked_mul(binary).ok_or(QuantityError::Numeric)?;
        Ok(Quantity::new(if neg { -mantissa } else { mantissa }, exp))
    }

    pub fn is_zero(&self) -> bool {
        self.mantissa == 0
    }

    /// True when strictly greater than zero.
    pub fn is_positive(&self) -> bool {
        self.mantissa > 0
    }

    pub fn is_negative(&self) -> bool {
        self.mantissa < 0
    }

    /// `ceil(self / 10^scale)`, rounding away from zero like upstream's `ScaledValue`,
    /// saturating at the i128 range.
    fn scaled(&self, scale: i32) -> i128 {
        if self.mantissa == 0 {
            return 0;
        }
        let shift = i64::from(self.exp) - i64::from(scale);
        let sat = if self.mantissa > 0 {
            i128::MAX
        } else {
            i128::MIN
        };
        if shift >= 0 {
            u32::try_from(shift)
                .ok()
                .and_then(pow10)
                .and_then(|p| self.mantissa.checked_mul(p))
                .unwrap_or(sat)
        } else {
            let Some(div) = u32::try_from(-shift).ok().and_then(pow10) else {
                // Smaller than one unit of the scale, but not zero: rounds to ±1.
                return self.mantissa.signum();
            };
            let q = self.mantissa / div;
            if self.mantissa % div == 0 {
                q
            } else {
                q + self.mantissa.signum()
            }
        }
    }

    /// Whole units (bytes, cores, pods), rounded up (away from zero) like `Quantity.Value()`,
    /// saturating at the i64 range.
    pub fn value(&self) -> i64 {
        clamp_i64(self.scaled(0))
    }

    /// Thousandths of the unit (millicores), rounded up like `Quantity.MilliValue()`,
    /// saturating at the i64 range.
    pub fn milli_value(&self) -> i64 {
        clamp_i64(self.scaled(-3))
    }

    /// The sum, exact when it fits; saturates (keeping the larger magnitude) otherwise.
    pub fn saturating_add(&self, other: &Quantity) -> Quantity {
        if self.is_zero() {
            return *other;
        }
        if other.is_zero() {
            return *self;
        }
        let exp = self.exp.min(other.exp);
        let align = |q: &Quantity| {
            u32::try_from(q.exp - exp)
                .ok()
                .and_then(pow10)
                .and_then(|p| q.mantissa.checked_mul(p))
        };
        match (align(self), align(other)) {
            (Some(a), Some(b)) => match a.checked_add(b) {
                Some(s) => Quantity::new(s, exp),
                None => Quantity::new(a.saturating_add(b), exp),
            },
            _ => std::cmp::max_by(*self, *other, |a, b| a.abs_cmp(b)),
        }
    }

    /// The negation (for subtracting usage).
    pub fn negated(&self) -> Quantity {
        Quantity {
            mantissa: -self.mantissa,
            exp: self.exp,
        }
    }

    /// `resource.Quantity.String()`: the canonical form in the binary (`Ki`…`Ei`) or decimal
    /// SI format. A binary quantity below 1024 in magnitude or not a whole number prints
    /// decimal, like upstream; decimals finer than nano round up to `n`.
    pub fn canonical(&self, binary: bool) -> String {
        if self.mantissa == 0 {
            return "0".into();
        }
        if binary && self.exp >= 0 {
            let whole = u32::try_from(self.exp)
                .ok()
                .and_then(pow10)
                .and_then(|p| self.mantissa.checked_mul(p));
            if let Some(mut v) = whole.filter(|v| v.abs() >= 1024) {
                let mut i = 0;
                const SUF: [&str; 7] = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
                while i < 6 && v % 1024 == 0 {
                    v /= 1024;
                    i += 1;
                }
                return format!("{v}{}", SUF[i]);
            }
        }
        let e3 = self.exp.div_euclid(3) * 3;
        if e3 < -9 {
            return format!("{}n", self.scaled(-9));
        }
        let e3 = e3.min(18);
        let suffix = match e3 {
            -9 => "n",
            -6 => "u",
            -3 => "m",
            0 => "",
            3 => "k",
            6 => "M",
            9 => "G",
            12 => "T",
            15 => "P",
            _ => "E",
        };
        match u32::try_from(self.exp - e3)
            .ok()
            .and_then(pow10)
            .and_then(|p| self.mantissa.checked_mul(p))
        {
            Some(m) => format!("{m}{suffix}"),
            None => self.to_string(),
        }
    }

    fn abs_cmp(&self, other: &Quantity) -> Ordering {
        let a = Quantity::new(self.mantissa.abs(), self.exp);
        let b = Quantity::new(other.mantissa.abs(), other.exp);
        a.cmp(&b)
    }
}

fn clamp_i64(v: i128) -> i64 {
    v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

impl Ord for Quantity {
    fn cmp(&self, other: &Quantity) -> Ordering {
        let by_sign = self.mantissa.signum().cmp(&other.mantissa.signum());
        if by_sign != Ordering::Equal || self.mantissa == 0 {
            return by_sign;
        }
        // Same sign: bring the one with the larger exponent down to the smaller exponent. If
        // that overflows, its magnitude is the larger one.
        let (hi, lo, flipped) = if self.exp >= other.exp {
            (self, other, false)
        } else {
            (other, self, true)
        };
        let shift = u32::try_from(hi.exp - lo.exp).unwrap_or(u32::MAX);
        let ord = match pow10(shift).and_then(|p| hi.mantissa.checked_mul(p)) {
            Some(h) => h.cmp(&lo.mantissa),
            None if hi.mantissa > 0 => Ordering::Greater,
            None => Ordering::Less,
        };
        if flipped {
            ord.reverse()
        } else {
            ord
        }
    }
}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Quantity) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl FromStr for Quantity {
    type Err = QuantityError;

    fn from_str(s: &str) -> Result<Quantity, QuantityError> {
        Quantity::parse(s)
    }
}

impl TryFrom<&k8s_openapi::apimachinery::pkg::api::resource::Quantity> for Quantity {
    type Error = QuantityError;

    fn try_from(
        q: &k8s_openapi::apimachinery::pkg::api::resource::Quantity,
    ) -> Result<Quantity, QuantityError> {
        Quantity::parse(&q.0)
    }
}

/// Plain scientific form (`15e-1`), for logs and tests; not upstream's canonical form.
impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.exp == 0 {
            write!(f, "{}", self.mantissa)
        } else {
            write!(f, "{}e{}", self.mantissa, self.exp)
        }
    }
}

/// Millicores of a quantity string, `None` if it does not parse.
pub fn parse_milli_value(text: &str) -> Option<i64> {
    Quantity::parse(text).ok().map(|q| q.milli_value())
}

/// Whole units (bytes) of a quantity string, rounded up; `None` if it does not parse.
pub fn parse_value(text: &str) -> Option<i64> {
    Quantity::parse(text).ok().map(|q| q.value())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap()
    }

    #[test]
    fn suffixes_are_exact() {
        assert_eq!(q("1"), q("1000m"));
        assert_eq!(q("0.1"), q("100m"));
        assert_eq!(q("1k"), q("1000"));
        assert_eq!(q("1e3"), q("1k"));
        assert_eq!(q("1E3"), q("1000"));
        assert_eq!(q("1e-3"), q("1m"));
        assert_eq!(q("1E"), q("1e18"));
        assert_eq!(q("1Ki"), q("1024"));
        assert_eq!(q("1.5Gi"), q("1536Mi"));
        assert_eq!(q("1000000n"), q("1m"));
        assert_eq!(q("1000u"), q("1m"));
        assert_eq!(q("+5"), q("5"));
        assert_eq!(q("5."), q("5"));
        assert_eq!(q(".5"), q("500m"));
        assert_eq!(q("1.000000000000000000000000000000000000000000"), q("1"));
        assert_eq!(q(" 64Mi "), q("67108864"));
    }

    #[test]
    fn values_round_up_like_upstream() {
        assert_eq!(q("100m").milli_value(), 100);
        assert_eq!(q("1").milli_value(), 1000);
        assert_eq!(q("1.5").milli_value(), 1500);
        assert_eq!(q("1u").milli_value(), 1);
        assert_eq!(q("1n").value(), 1);
        assert_eq!(q("1500m").value(), 2);
        assert_eq!(q("-1500m").value(), -2);
        assert_eq!(q("0").value(), 0);
        assert_eq!(q("64Mi").value(), 64 << 20);
        assert_eq!(q("129e6").value(), 129_000_000);
        assert_eq!(q("1G").value(), 1_000_000_000);
        // Past f64's 53-bit mantissa: a float parser would lose the last digit.
        assert_eq!(q("9007199254740993").value(), 9_007_199_254_740_993);
        assert_eq!(q("8Ei").value(), i64::MAX);
        assert_eq!(q("1e100").value(), i64::MAX);
        assert_eq!(q("1e-100").value(), 1);
    }

    #[test]
    fn malformed_quantities_are_refused() {
        for bad in [
            "", ".", "abc", "1Qi", "1.2.3", "1e", "1e+", "1ee3", "--1", "1 Mi", "1KiB", "inf",
            "NaN", "1e1001",
        ] {
            assert!(Quantity::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn ordering_and_sums_are_exact() {
        assert!(q("999m") < q("1"));
        assert!(q("1001m") > q("1"));
        assert!(q("-1") < q("0"));
        assert!(q("-2") < q("-1"));
        assert!(q("1e1000") > q("8Ei"));
        assert!(q("-1e1000") < q("-8Ei"));
        assert_eq!(q("500m").saturating_add(&q("0.5")), q("1"));
        assert_eq!(q("1Mi").saturating_add(&q("1Mi")), q("2Mi"));
        assert_eq!(q("1e1000").saturating_add(&q("1")), q("1e1000"));
        assert_eq!(q("1.5").to_string(), "15e-1");
    }
}
