//! `duration(string)` without the `cel` crate's `chrono` feature (which pulls in the whole time
//! zone database): a [`Val`] of its own holding nanoseconds, parsed like Go's
//! `time.ParseDuration`, comparable, addable and subtractable, with `getHours`, `getMinutes`,
//! `getSeconds` and `getMilliseconds`. CRD rules use it (e.g. gateway-api's HTTPRoute timeouts).

use std::any::Any;
use std::cmp::Ordering;

use cel::common::traits::{Adder, Comparer, Subtractor};
use cel::common::types::{CelInt, CelString, Type, DURATION_TYPE, STRING_TYPE};
use cel::common::value::{CowVal, Val};
use cel::{DeclarationError, Env, ExecutionError};

/// A duration in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Duration(pub i64);

fn of(v: &dyn Val) -> Option<Duration> {
    v.as_any()?.downcast_ref::<Duration>().copied()
}

impl Val for Duration {
    fn get_type(&self) -> &Type {
        &DURATION_TYPE
    }

    fn cel_type() -> &'static Type {
        &DURATION_TYPE
    }

    fn as_comparer(&self) -> Option<&dyn Comparer> {
        Some(self)
    }

    fn as_adder<'b, 'v>(&'b self) -> Option<&'b (dyn Adder + 'v)>
    where
        Self: 'v,
    {
        Some(self)
    }

    fn as_subtractor<'b, 'v>(&'b self) -> Option<&'b (dyn Subtractor + 'v)>
    where
        Self: 'v,
    {
        Some(self)
    }

    fn equals(&self, other: &dyn Val) -> bool {
        of(other) == Some(*self)
    }

    fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v>
    where
        Self: 'v,
    {
        Box::new(*self)
    }

    fn as_any(&self) -> Option<&dyn Any> {
        Some(self)
    }
}

fn mismatch(op: &'static str, lhs: &Duration, rhs: &dyn Val) -> ExecutionError {
    ExecutionError::no_such_overload(
        op,
        vec![
            lhs.get_type().name().to_owned(),
            rhs.get_type().name().to_owned(),
        ],
    )
}

impl Comparer for Duration {
    fn compare(&self, rhs: &dyn Val) -> Result<Ordering, ExecutionError> {
        of(rhs)
            .map(|r| self.cmp(&r))
            .ok_or_else(|| mismatch("_<_", self, rhs))
    }
}

impl Adder for Duration {
    fn add<'b, 'v>(&'b self, rhs: &(dyn Val + 'v)) -> Result<CowVal<'b, 'v>, ExecutionError>
    where
        Self: 'v,
    {
        let r = of(rhs).ok_or_else(|| mismatch("_+_", self, rhs))?;
        let sum = self
            .0
            .checked_add(r.0)
            .ok_or_else(|| ExecutionError::function_error("_+_", "duration overflow"))?;
        Ok(CowVal::owned(Duration(sum)))
    }
}

impl Subtractor for Duration {
    fn sub<'b, 'v>(&'b self, rhs: &(dyn Val + 'v)) -> Result<CowVal<'b, 'v>, ExecutionError>
    where
        Self: 'v,
    {
        let r = of(rhs).ok_or_else(|| mismatch("_-_", self, rhs))?;
        let diff = self
            .0
            .checked_sub(r.0)
            .ok_or_else(|| ExecutionError::function_error("_-_", "duration overflow"))?;
        Ok(CowVal::owned(Duration(diff)))
    }
}

/// Go's `time.ParseDuration`: an optional sign, then decimal numbers each with a unit
/// (`ns`, `us`/`µs`, `ms`, `s`, `m`, `h`), e.g. `1h30m`, `1.5s`, `-300ms`; `0` alone.
pub(crate) fn parse(s: &str) -> Option<i64> {
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_end);
        if num.is_empty() || num == "." {
            return None;
        }
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_end);
        let scale: i128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        let (int, frac) = num.split_once('.').unwrap_or((num, ""));
        let int: i128 = if int.is_empty() { 0 } else { int.parse().ok()? };
        let mut value = int.checked_mul(scale)?;
        // The fraction, to nanosecond precision.
        let mut unit_part = scale;
        for d in frac.chars().take(18) {
            unit_part /= 10;
            value = value.checked_add(i128::from(d.to_digit(10)?) * unit_part)?;
        }
        total = total.checked_add(value)?;
        rest = tail;
    }
    let total = if neg { -total } else { total };
    i64::try_from(total).ok()
}

fn duration_fn<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    crate::charge(1)?;
    let text = args
        .first()
        .and_then(|a| a.as_ref().downcast_ref::<CelString>())
        .map(|s| s.inner().to_string())
        .ok_or_else(|| ExecutionError::function_error("duration", "expected a string"))?;
    let n = parse(&text).ok_or_else(|| {
        ExecutionError::function_error(
            "duration",
            format!("type conversion error from 'string' to 'google.protobuf.Duration': time: invalid duration \"{text}\""),
        )
    })?;
    Ok(CowVal::owned(Duration(n)))
}

fn getter<'b, 'v>(
    args: &[CowVal<'b, 'v>],
    f: &str,
    div: i64,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    crate::charge(1)?;
    let d = args
        .first()
        .and_then(|a| of(a.as_ref()))
        .ok_or_else(|| ExecutionError::function_error(f, "expected a duration"))?;
    Ok(CowVal::owned(CelInt::from(d.0 / div)))
}

fn get_hours<'b, 'v>(a: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    getter(&a, "getHours", 3_600_000_000_000)
}
fn get_minutes<'b, 'v>(a: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    getter(&a, "getMinutes", 60_000_000_000)
}
fn get_seconds<'b, 'v>(a: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    getter(&a, "getSeconds", 1_000_000_000)
}
fn get_milliseconds<'b, 'v>(a: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    getter(&a, "getMilliseconds", 1_000_000)
}

pub(crate) fn register(env: &mut Env) -> Result<(), DeclarationError> {
    env.add_overload(
        "duration",
        "skiff_duration_string",
        vec![STRING_TYPE],
        duration_fn,
    )?;
    env.add_member_overload(
        "getHours",
        "skiff_duration_hours",
        DURATION_TYPE,
        vec![],
        get_hours,
    )?;
    env.add_member_overload(
        "getMinutes",
        "skiff_duration_minutes",
        DURATION_TYPE,
        vec![],
        get_minutes,
    )?;
    env.add_member_overload(
        "getSeconds",
        "skiff_duration_seconds",
        DURATION_TYPE,
        vec![],
        get_seconds,
    )?;
    env.add_member_overload(
        "getMilliseconds",
        "skiff_duration_milliseconds",
        DURATION_TYPE,
        vec![],
        get_milliseconds,
    )?;
    Ok(())
}
