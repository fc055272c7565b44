//! Cron schedules as upstream's CronJob validation parses them (robfig/cron v3.0.1
//! `ParseStandard`): what is accepted, the bits, and the error texts kubectl prints.

use skiff_semantics::cron::{load_location, parse_standard, CronSchedule, Schedule, STAR_BIT};

fn fields(spec: &str) -> (u64, u64, u64, u64, u64) {
    match parse_standard(spec) {
        Ok(CronSchedule {
            schedule:
                Schedule::Fields {
                    minute,
                    hour,
                    dom,
                    month,
                    dow,
                },
            ..
        }) => (minute, hour, dom, month, dow),
        other => panic!("{spec:?}: {other:?}"),
    }
}

fn bits(values: &[u64]) -> u64 {
    values.iter().fold(0, |acc, v| acc | 1 << v)
}

fn err(spec: &str) -> String {
    parse_standard(spec).expect_err(spec)
}

#[test]
fn standard_fields() {
    let all_minutes = bits(&(0..60).collect::<Vec<_>>());
    let (m, h, dom, mon, dow) = fields("*/1 * * * *");
    // A step of 1 keeps the star (robfig only drops it for steps > 1).
    assert_eq!(m, all_minutes | STAR_BIT);
    assert_eq!(h, bits(&(0..24).collect::<Vec<_>>()) | STAR_BIT);
    assert_eq!(dom, bits(&(1..32).collect::<Vec<_>>()) | STAR_BIT);
    assert_eq!(mon, bits(&(1..13).collect::<Vec<_>>()) | STAR_BIT);
    assert_eq!(dow, bits(&(0..7).collect::<Vec<_>>()) | STAR_BIT);
    let (m, h, dom, mon, dow) = fields("*/15 9-17 1,15 JAN-mar mon-FRI");
    assert_eq!(m, bits(&[0, 15, 30, 45]));
    assert_eq!(h, bits(&(9..=17).collect::<Vec<_>>()));
    assert_eq!(dom, bits(&[1, 15]));
    assert_eq!(mon, bits(&[1, 2, 3]));
    assert_eq!(dow, bits(&[1, 2, 3, 4, 5]));
    // "N/step" runs to the maximum; `?` is a star; empty list items are skipped.
    let (m, _, dom, _, dow) = fields("50/5 0 ? * 0,,6");
    assert_eq!(m, bits(&[50, 55]));
    assert_eq!(dom & STAR_BIT, STAR_BIT);
    assert_eq!(dow, bits(&[0, 6]));
    // Whitespace between fields is free-form.
    assert_eq!(fields("  0\t0  * * *  ").0, 1);
}

#[test]
fn descriptors() {
    let daily = fields("@daily");
    assert_eq!(fields("@midnight"), daily);
    assert_eq!((daily.0, daily.1), (1, 1));
    assert_eq!(fields("@annually"), fields("@yearly"));
    assert_eq!(fields("@yearly").2, 1 << 1);
    assert_eq!(fields("@monthly").3 & STAR_BIT, STAR_BIT);
    assert_eq!(fields("@weekly").4, 1);
    assert_eq!(fields("@hourly").1 & STAR_BIT, STAR_BIT);
    let every = |s: &str| parse_standard(s).map(|c| c.schedule);
    assert_eq!(
        every("@every 1h30m"),
        Ok(Schedule::Every(5_400_000_000_000))
    );
    assert_eq!(every("@every 1.5s"), Ok(Schedule::Every(1_500_000_000)));
    assert_eq!(every("@every 0"), Ok(Schedule::Every(0)));
    assert_eq!(
        err("@every 5"),
        "failed to parse duration @every 5: time: missing unit in duration \"5\""
    );
    assert_eq!(
        err("@every 5x"),
        "failed to parse duration @every 5x: time: unknown unit \"x\" in duration \"5x\""
    );
    assert_eq!(
        err("@every "),
        "failed to parse duration @every : time: invalid duration \"\""
    );
    // Descriptors match exactly (case and trailing spaces included).
    assert_eq!(err("@Daily"), "unrecognized descriptor: @Daily");
    assert_eq!(err("@fortnightly"), "unrecognized descriptor: @fortnightly");
}

#[test]
fn upstream_error_texts() {
    assert_eq!(err(""), "empty spec string");
    assert_eq!(err("bad"), "expected exactly 5 fields, found 1: [bad]");
    assert_eq!(
        err("* * * * * *"),
        "expected exactly 5 fields, found 6: [* * * * * *]"
    );
    assert_eq!(err("   "), "expected exactly 5 fields, found 0: []");
    assert_eq!(
        err("60 * * * *"),
        "end of range (60) above maximum (59): 60"
    );
    assert_eq!(
        err("* 24 * * *"),
        "end of range (24) above maximum (23): 24"
    );
    assert_eq!(
        err("* * 0 * *"),
        "beginning of range (0) below minimum (1): 0"
    );
    assert_eq!(
        err("* * * 13 *"),
        "end of range (13) above maximum (12): 13"
    );
    // Upstream's day-of-week stops at 6 (Saturday); 7 is not Sunday there.
    assert_eq!(err("0 0 * * 7"), "end of range (7) above maximum (6): 7");
    assert_eq!(
        err("5-1 * * * *"),
        "beginning of range (5) beyond end of range (1): 5-1"
    );
    assert_eq!(
        err("*/0 * * * *"),
        "step of range should be a positive number: */0"
    );
    assert_eq!(err("1-2-3 * * * *"), "too many hyphens: 1-2-3");
    assert_eq!(err("*/2/3 * * * *"), "too many slashes: */2/3");
    assert_eq!(
        err("x * * * *"),
        "failed to parse int from x: strconv.Atoi: parsing \"x\": invalid syntax"
    );
    assert_eq!(
        err("1- * * * *"),
        "failed to parse int from : strconv.Atoi: parsing \"\": invalid syntax"
    );
    assert_eq!(err("*/-1 * * * *"), "negative number (-1) not allowed: -1");
    assert_eq!(
        err("0 0 L * *"),
        "failed to parse int from L: strconv.Atoi: parsing \"L\": invalid syntax"
    );
    assert_eq!(
        err("99999999999999999999 * * * *"),
        "failed to parse int from 99999999999999999999: strconv.Atoi: parsing \"99999999999999999999\": value out of range"
    );
}

#[test]
fn time_zone_prefixes() {
    let c = parse_standard("TZ=Europe/Berlin 0 9 * * 1-5").expect("tz prefix");
    assert_eq!(c.time_zone.as_deref(), Some("Europe/Berlin"));
    assert_eq!(
        parse_standard("CRON_TZ=UTC @hourly")
            .expect("cron_tz")
            .time_zone
            .as_deref(),
        Some("UTC")
    );
    assert_eq!(
        err("TZ=Mars/Olympus * * * * *"),
        "provided bad location Mars/Olympus: unknown time zone Mars/Olympus"
    );
    assert!(load_location("America/New_York").is_ok());
    assert!(load_location("").is_ok() && load_location("Local").is_ok());
    // Go opens the zone file by name: the spelling must match.
    assert_eq!(
        load_location("america/new_york"),
        Err("unknown time zone america/new_york".into())
    );
    assert_eq!(
        load_location("../etc/passwd"),
        Err("time: invalid location name".into())
    );
}

fn ts(s: &str) -> jiff::Timestamp {
    s.parse().expect("timestamp")
}

fn next(spec: &str, zone: &str, after: &str) -> Option<jiff::Timestamp> {
    let tz = jiff::tz::TimeZone::get(zone).expect("zone");
    parse_standard(spec)
        .expect("parse")
        .next_after(ts(after), &tz)
}

#[test]
fn next_after_walks_fields_like_robfig() {
    // Strictly after, from the next whole second.
    assert_eq!(
        next("*/5 * * * *", "UTC", "2026-11-27T10:05:00Z"),
        Some(ts("2026-11-27T10:10:00Z"))
    );
    assert_eq!(
        next("* * * * *", "UTC", "2026-11-27T10:04:59.9Z"),
        Some(ts("2026-11-27T10:05:00Z"))
    );
    // Neither day field starred: either one matches (the 13th, or a Friday).
    // 2026-12-04 is a Friday, before the 13th.
    assert_eq!(
        next("0 0 13 * 5", "UTC", "2026-11-28T00:00:00Z"),
        Some(ts("2026-12-04T00:00:00Z"))
    );
    // A starred day-of-week: only the 13th.
    assert_eq!(
        next("0 0 13 * *", "UTC", "2026-11-28T00:00:00Z"),
        Some(ts("2026-12-13T00:00:00Z"))
    );
    // Month wrap into the next year, with names.
    assert_eq!(
        next("30 6 1 jan *", "UTC", "2026-03-01T00:00:00Z"),
        Some(ts("2027-01-01T06:30:00Z"))
    );
    // A zone: 09:00 in New York in winter is 14:00 UTC.
    assert_eq!(
        next("0 9 * * *", "America/New_York", "2026-11-27T10:00:00Z"),
        Some(ts("2026-11-27T14:00:00Z"))
    );
    // The spring-forward gap (02:00-03:00 on 2026-03-08 in New York) skips 02:30 that day.
    assert_eq!(
        next("30 2 * * *", "America/New_York", "2026-03-07T08:00:00Z"),
        Some(ts("2026-03-09T06:30:00Z"))
    );
    // Never (Feb 30): robfig gives up after five years.
    assert_eq!(next("0 0 30 2 *", "UTC", "2026-01-01T00:00:00Z"), None);
    // A TZ= prefix names the zone; the fallback applies only without one.
    let tokyo = parse_standard("TZ=Asia/Tokyo 0 9 * * *").expect("parse");
    let tz = tokyo.zone(jiff::tz::TimeZone::UTC).expect("zone");
    assert_eq!(
        tokyo.next_after(ts("2026-11-27T10:00:00Z"), &tz),
        Some(ts("2026-11-28T00:00:00Z"))
    );
}

#[test]
fn next_after_every_is_a_whole_second_delay() {
    let utc = jiff::tz::TimeZone::UTC;
    let every = parse_standard("@every 1h30m").expect("parse");
    assert_eq!(
        every.next_after(ts("2026-11-27T10:00:00.5Z"), &utc),
        Some(ts("2026-11-27T11:30:00Z"))
    );
    // Under a second rounds up to one, as robfig's Every does.
    let fast = parse_standard("@every 300ms").expect("parse");
    assert_eq!(
        fast.next_after(ts("2026-11-27T10:00:00.5Z"), &utc),
        Some(ts("2026-11-27T10:00:01Z"))
    );
}
