//! Cron schedules as upstream's CronJob validation parses them (robfig/cron v3.0.1
//! `ParseStandard`): what is accepted, the bits, and the error texts kubectl prints.

use skiff_api::cron::{load_location, parse_standard, CronSchedule, Schedule, STAR_BIT};

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
