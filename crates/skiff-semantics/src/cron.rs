//! Cron schedules as upstream's CronJob validation reads them: `cron.ParseStandard` of
//! github.com/robfig/cron/v3 v3.0.1 (what kube-apiserver vendors) — five fields (minute, hour,
//! day of month, month, day of week), or a descriptor (`@yearly`, `@annually`, `@monthly`,
//! `@weekly`, `@daily`, `@midnight`, `@hourly`, `@every <duration>`), optionally behind a
//! `TZ=<zone> ` / `CRON_TZ=<zone> ` prefix. Acceptance and error texts match upstream because
//! kubectl prints the 422 message verbatim (`expected exactly 5 fields, found 1: [bad]`).
//!
//! [`CronSchedule::next_after`] is robfig's `Schedule.Next`, so the CronJob controller fires on
//! exactly what validation accepted.
//!
//! Known differences from other cron dialects that upstream keeps: day-of-week is 0–6 (`7` is
//! out of range), no `L`/`W`/`#`, `?` means `*` in every field, names are case-insensitive.

/// Bit 63 of a field's set: the field was `*` or `?` (robfig's `starBit`; a starred
/// day-of-month or day-of-week changes how the two combine).
pub const STAR_BIT: u64 = 1 << 63;

/// What a schedule fires on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// One bit per allowed value of each field (bit `n` = value `n`), plus [`STAR_BIT`].
    Fields {
        minute: u64,
        hour: u64,
        dom: u64,
        month: u64,
        dow: u64,
    },
    /// `@every <duration>`, in nanoseconds as Go's `time.Duration` parses it.
    Every(i64),
}

/// A parsed standard schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronSchedule {
    /// The zone of a `TZ=`/`CRON_TZ=` prefix (`""` = UTC, as Go loads it).
    pub time_zone: Option<String>,
    pub schedule: Schedule,
}

impl CronSchedule {
    /// The zone the schedule runs in: its `TZ=` prefix, else `fallback`. `""`/`UTC` are UTC
    /// and `Local` is the host zone, as Go loads them.
    pub fn zone(&self, fallback: jiff::tz::TimeZone) -> Result<jiff::tz::TimeZone, String> {
        match self.time_zone.as_deref() {
            None => Ok(fallback),
            Some("" | "UTC") => Ok(jiff::tz::TimeZone::UTC),
            Some("Local") => Ok(jiff::tz::TimeZone::system()),
            Some(name) => jiff::tz::TimeZone::get(name).map_err(|e| e.to_string()),
        }
    }

    /// The first activation strictly after `after`, evaluated in `tz` (robfig's `Next`; `None`
    /// where it returns the zero time: nothing within five years).
    pub fn next_after(
        &self,
        after: jiff::Timestamp,
        tz: &jiff::tz::TimeZone,
    ) -> Option<jiff::Timestamp> {
        match self.schedule {
            Schedule::Every(delay) => {
                // ConstantDelaySchedule: at least a second, whole seconds, from the whole second.
                let secs = (delay / 1_000_000_000).max(1);
                jiff::Timestamp::from_second(after.as_second().checked_add(secs)?).ok()
            }
            Schedule::Fields {
                minute,
                hour,
                dom,
                month,
                dow,
            } => next_fields([minute, hour, dom, month, dow], after, tz),
        }
    }
}

/// robfig's `SpecSchedule.Next` with the seconds field fixed at 0: walk month, day, hour,
/// minute forward (resetting the smaller fields on the first step) and start over on a wrap.
fn next_fields(
    [minute, hour, dom, month, dow]: [u64; 5],
    after: jiff::Timestamp,
    tz: &jiff::tz::TimeZone,
) -> Option<jiff::Timestamp> {
    use jiff::{civil, SignedDuration, Span, Zoned};
    let set = |mask: u64, v: i8| u64::try_from(v).is_ok_and(|v| mask & (1 << v) != 0);
    let at = |d: civil::Date, h: i8, m: i8| -> Option<Zoned> {
        d.at(h, m, 0, 0).to_zoned(tz.clone()).ok()
    };
    let day_matches = |t: &Zoned| {
        let (d, w) = (
            set(dom, t.day()),
            set(dow, t.weekday().to_sunday_zero_offset()),
        );
        if dom & STAR_BIT != 0 || dow & STAR_BIT != 0 {
            d && w
        } else {
            d || w
        }
    };
    // The upcoming whole second.
    let mut t = jiff::Timestamp::from_second(after.as_second().checked_add(1)?)
        .ok()?
        .to_zoned(tz.clone());
    let mut added = false;
    let year_limit = t.year().checked_add(5)?;
    'wrap: loop {
        if t.year() > year_limit {
            return None;
        }
        while !set(month, t.month()) {
            if !added {
                added = true;
                t = at(t.date().first_of_month(), 0, 0)?;
            }
            t = t.checked_add(Span::new().months(1)).ok()?;
            if t.month() == 1 {
                continue 'wrap;
            }
        }
        while !day_matches(&t) {
            if !added {
                added = true;
                t = at(t.date(), 0, 0)?;
            }
            t = t.checked_add(Span::new().days(1)).ok()?;
            // A DST change can leave the day starting off midnight: snap back to it.
            if t.hour() != 0 {
                let fix = if t.hour() > 12 {
                    24 - i64::from(t.hour())
                } else {
                    -i64::from(t.hour())
                };
                t = t.checked_add(SignedDuration::from_hours(fix)).ok()?;
            }
            if t.day() == 1 {
                continue 'wrap;
            }
        }
        while !set(hour, t.hour()) {
            if !added {
                added = true;
                t = at(t.date(), t.hour(), 0)?;
            }
            t = t.checked_add(SignedDuration::from_hours(1)).ok()?;
            if t.hour() == 0 {
                continue 'wrap;
            }
        }
        while !set(minute, t.minute()) {
            if !added {
                added = true;
                t = truncate(&t, 60)?;
            }
            t = t.checked_add(SignedDuration::from_mins(1)).ok()?;
            if t.minute() == 0 {
                continue 'wrap;
            }
        }
        // Seconds: only 0 is set.
        while t.second() != 0 {
            if !added {
                added = true;
                t = truncate(&t, 1)?;
            }
            t = t.checked_add(SignedDuration::from_secs(1)).ok()?;
            if t.second() == 0 {
                continue 'wrap;
            }
        }
        return Some(t.timestamp());
    }
}

/// Go's `Time.Truncate`: down to a multiple of `secs` of absolute time.
fn truncate(t: &jiff::Zoned, secs: i64) -> Option<jiff::Zoned> {
    let s = t.timestamp().as_second();
    let ts = jiff::Timestamp::from_second(s - s.rem_euclid(secs)).ok()?;
    Some(ts.to_zoned(t.time_zone().clone()))
}

struct Bounds {
    min: u64,
    max: u64,
    names: &'static [(&'static str, u64)],
}

const MINUTES: Bounds = Bounds {
    min: 0,
    max: 59,
    names: &[],
};
const HOURS: Bounds = Bounds {
    min: 0,
    max: 23,
    names: &[],
};
const DOM: Bounds = Bounds {
    min: 1,
    max: 31,
    names: &[],
};
const MONTHS: Bounds = Bounds {
    min: 1,
    max: 12,
    names: &[
        ("jan", 1),
        ("feb", 2),
        ("mar", 3),
        ("apr", 4),
        ("may", 5),
        ("jun", 6),
        ("jul", 7),
        ("aug", 8),
        ("sep", 9),
        ("oct", 10),
        ("nov", 11),
        ("dec", 12),
    ],
};
const DOW: Bounds = Bounds {
    min: 0,
    max: 6,
    names: &[
        ("sun", 0),
        ("mon", 1),
        ("tue", 2),
        ("wed", 3),
        ("thu", 4),
        ("fri", 5),
        ("sat", 6),
    ],
};

/// `cron.ParseStandard`: the schedule, or upstream's error text.
pub fn parse_standard(spec: &str) -> Result<CronSchedule, String> {
    if spec.is_empty() {
        return Err("empty spec string".into());
    }
    let mut spec = spec;
    let mut time_zone = None;
    if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
        // The zone ends at the first space (Go would panic without one; say it is bad).
        let eq = spec.find('=').unwrap_or(0);
        let (name, rest) = match spec.find(' ') {
            Some(i) => (&spec[eq + 1..i], &spec[i..]),
            None => (&spec[eq + 1..], ""),
        };
        load_location(name).map_err(|e| format!("provided bad location {name}: {e}"))?;
        time_zone = Some(name.to_string());
        spec = rest.trim();
    }
    if spec.starts_with('@') {
        let schedule = descriptor(spec)?;
        return Ok(CronSchedule {
            time_zone,
            schedule,
        });
    }
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected exactly 5 fields, found {}: [{}]",
            fields.len(),
            fields.join(" ")
        ));
    }
    Ok(CronSchedule {
        time_zone,
        schedule: Schedule::Fields {
            minute: field(fields[0], &MINUTES)?,
            hour: field(fields[1], &HOURS)?,
            dom: field(fields[2], &DOM)?,
            month: field(fields[3], &MONTHS)?,
            dow: field(fields[4], &DOW)?,
        },
    })
}

fn descriptor(spec: &str) -> Result<Schedule, String> {
    let bit = |b: &Bounds| 1u64 << b.min;
    let all = |b: &Bounds| bits(b.min, b.max, 1) | STAR_BIT;
    let (minute, hour) = (bit(&MINUTES), bit(&HOURS));
    let fields = |dom, month, dow| Schedule::Fields {
        minute,
        hour,
        dom,
        month,
        dow,
    };
    Ok(match spec {
        "@yearly" | "@annually" => fields(bit(&DOM), bit(&MONTHS), all(&DOW)),
        "@monthly" => fields(bit(&DOM), all(&MONTHS), all(&DOW)),
        "@weekly" => fields(all(&DOM), all(&MONTHS), bit(&DOW)),
        "@daily" | "@midnight" => fields(all(&DOM), all(&MONTHS), all(&DOW)),
        "@hourly" => Schedule::Fields {
            minute,
            hour: all(&HOURS),
            dom: all(&DOM),
            month: all(&MONTHS),
            dow: all(&DOW),
        },
        _ => match spec.strip_prefix("@every ") {
            Some(d) => Schedule::Every(
                go_duration(d).map_err(|e| format!("failed to parse duration {spec}: {e}"))?,
            ),
            None => return Err(format!("unrecognized descriptor: {spec}")),
        },
    })
}

/// A comma-separated list of ranges (empty items are skipped, as `strings.FieldsFunc` does).
fn field(text: &str, b: &Bounds) -> Result<u64, String> {
    let mut out = 0;
    for expr in text.split(',').filter(|s| !s.is_empty()) {
        out |= range(expr, b)?;
    }
    Ok(out)
}

/// `number | number "-" number [ "/" number ]`, `*` or `?` for the whole range.
fn range(expr: &str, b: &Bounds) -> Result<u64, String> {
    let range_and_step: Vec<&str> = expr.split('/').collect();
    let low_and_high: Vec<&str> = range_and_step[0].split('-').collect();
    let single = low_and_high.len() == 1;
    let (start, mut end, mut extra) = if matches!(low_and_high[0], "*" | "?") {
        (b.min, b.max, STAR_BIT)
    } else {
        let start = int_or_name(low_and_high[0], b)?;
        let end = match low_and_high.len() {
            1 => start,
            2 => int_or_name(low_and_high[1], b)?,
            _ => return Err(format!("too many hyphens: {expr}")),
        };
        (start, end, 0)
    };
    let step = match range_and_step.len() {
        1 => 1,
        2 => {
            let step = non_negative_int(range_and_step[1])?;
            // "N/step" means "N-max/step".
            if single {
                end = b.max;
            }
            if step > 1 {
                extra = 0;
            }
            step
        }
        _ => return Err(format!("too many slashes: {expr}")),
    };
    if start < b.min {
        return Err(format!(
            "beginning of range ({start}) below minimum ({}): {expr}",
            b.min
        ));
    }
    if end > b.max {
        return Err(format!(
            "end of range ({end}) above maximum ({}): {expr}",
            b.max
        ));
    }
    if start > end {
        return Err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        ));
    }
    if step == 0 {
        return Err(format!("step of range should be a positive number: {expr}"));
    }
    Ok(bits(start, end, step) | extra)
}

fn bits(min: u64, max: u64, step: u64) -> u64 {
    (min..=max)
        .step_by(usize::try_from(step).unwrap_or(usize::MAX))
        .fold(0, |acc, i| acc | 1 << i)
}

fn int_or_name(expr: &str, b: &Bounds) -> Result<u64, String> {
    let lower = expr.to_ascii_lowercase();
    if let Some((_, n)) = b.names.iter().find(|(name, _)| *name == lower) {
        return Ok(*n);
    }
    non_negative_int(expr)
}

/// robfig's `mustParseInt`: Go's `strconv.Atoi`, then no negatives.
fn non_negative_int(expr: &str) -> Result<u64, String> {
    let n = go_atoi(expr).map_err(|e| format!("failed to parse int from {expr}: {e}"))?;
    u64::try_from(n).map_err(|_| format!("negative number ({n}) not allowed: {expr}"))
}

/// `strconv.Atoi` (64-bit): an optional sign and decimal digits.
fn go_atoi(s: &str) -> Result<i64, String> {
    let err = |what: &str| format!("strconv.Atoi: parsing {s:?}: {what}");
    let (neg, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return Err(err("invalid syntax"));
    }
    let mut n: i128 = 0;
    for c in digits.bytes() {
        n = n * 10 + i128::from(c - b'0');
        if n > i128::from(i64::MAX) + 1 {
            return Err(err("value out of range"));
        }
    }
    let n = if neg { -n } else { n };
    i64::try_from(n).map_err(|_| err("value out of range"))
}

/// Go's `time.ParseDuration`: `[-+]?([0-9]*(\.[0-9]*)?[a-z]+)+`, in nanoseconds.
fn go_duration(orig: &str) -> Result<i64, String> {
    let invalid = || format!("time: invalid duration {orig:?}");
    let mut s = orig;
    let mut neg = false;
    if let Some(rest) = s.strip_prefix('-') {
        neg = true;
        s = rest;
    } else if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    }
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    const LIMIT: u128 = 1 << 63;
    let mut total: u128 = 0;
    while !s.is_empty() {
        if !s.starts_with(|c: char| c == '.' || c.is_ascii_digit()) {
            return Err(invalid());
        }
        let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
        let mut v: u128 = 0;
        for c in s[..int_len].bytes() {
            v = v * 10 + u128::from(c - b'0');
            if v > LIMIT {
                return Err(invalid());
            }
        }
        s = &s[int_len..];
        let (mut frac, mut scale, mut post) = (0u128, 1f64, false);
        if let Some(rest) = s.strip_prefix('.') {
            let frac_len = rest.bytes().take_while(u8::is_ascii_digit).count();
            for c in rest[..frac_len].bytes() {
                // Digits past what fits only add precision Go drops too.
                if frac < LIMIT / 10 {
                    frac = frac * 10 + u128::from(c - b'0');
                    scale *= 10.0;
                }
            }
            post = frac_len > 0;
            s = &rest[frac_len..];
        }
        if int_len == 0 && !post {
            return Err(invalid());
        }
        let unit_len = s
            .char_indices()
            .find(|(_, c)| *c == '.' || c.is_ascii_digit())
            .map_or(s.len(), |(i, _)| i);
        if unit_len == 0 {
            return Err(format!("time: missing unit in duration {orig:?}"));
        }
        let unit_name = &s[..unit_len];
        s = &s[unit_len..];
        let unit: u128 = match unit_name {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => {
                return Err(format!(
                    "time: unknown unit {unit_name:?} in duration {orig:?}"
                ))
            }
        };
        let mut part = v
            .checked_mul(unit)
            .filter(|p| *p <= LIMIT)
            .ok_or_else(invalid)?;
        if frac > 0 {
            // Truncation like Go's uint64(float64) conversion of a non-negative value.
            part += (frac as f64 * (unit as f64 / scale)) as u128;
            if part > LIMIT {
                return Err(invalid());
            }
        }
        total += part;
        if total > LIMIT {
            return Err(invalid());
        }
    }
    if neg {
        // -(1<<63) is the one value only a negative duration can hold.
        return i64::try_from(-(total as i128)).map_err(|_| invalid());
    }
    i64::try_from(total).map_err(|_| invalid())
}

/// Go's `time.LoadLocation` (the error is Go's text): `""` and `UTC` are UTC, `Local` is the
/// host zone, other names must be in the tz database exactly as spelled (Go reads the zone
/// file by name, so the match is case-sensitive).
pub fn load_location(name: &str) -> Result<(), String> {
    if name.is_empty() || name == "UTC" || name == "Local" {
        return Ok(());
    }
    if name.contains("..") || name.starts_with('/') || name.starts_with('\\') {
        return Err("time: invalid location name".into());
    }
    match jiff::tz::TimeZone::get(name) {
        Ok(tz) if tz.iana_name() == Some(name) => Ok(()),
        _ => Err(format!("unknown time zone {name}")),
    }
}
