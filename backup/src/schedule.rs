//! When the next scheduled backup is due, in local time.

use chrono::{DateTime, Datelike, Duration, FixedOffset, Local, NaiveTime, TimeZone, Timelike};
use kohaproxy_config::Schedule;

/// The first time strictly after `now` that `schedule` names, or None for `off`. A local
/// time that does not exist (a DST gap) moves to the next day or hour that has it; one
/// that exists twice (DST end) is the first of the two.
pub fn next_after<Tz: TimeZone>(schedule: Schedule, now: &DateTime<Tz>) -> Option<DateTime<Tz>> {
    let tz = now.timezone();
    let naive = now.naive_local();
    let (hour, minute, step_days, weekday) = match schedule {
        Schedule::Off => return None,
        Schedule::Hourly { minute } => {
            let mut t =
                naive
                    .date()
                    .and_time(NaiveTime::from_hms_opt(naive.hour(), u32::from(minute), 0)?);
            for _ in 0..48 {
                if t > naive {
                    if let Some(at) = tz.from_local_datetime(&t).earliest() {
                        return Some(at);
                    }
                }
                t += Duration::hours(1);
            }
            return None;
        }
        Schedule::Daily { hour, minute } => (hour, minute, 1, None),
        Schedule::Weekly {
            weekday,
            hour,
            minute,
        } => (hour, minute, 1, Some(u32::from(weekday))),
    };
    let time = NaiveTime::from_hms_opt(u32::from(hour), u32::from(minute), 0)?;
    let mut day = naive.date();
    for _ in 0..15 {
        let t = day.and_time(time);
        let right_day = weekday.is_none_or(|w| day.weekday().num_days_from_monday() == w);
        if right_day && t > naive {
            if let Some(at) = tz.from_local_datetime(&t).earliest() {
                return Some(at);
            }
        }
        day += Duration::days(step_days);
    }
    None
}

/// The scheduled time that was missed, if any: the latest time `schedule` names at or
/// before `now`, when the newest backup (`last`, its start) began before it, as when the
/// proxy was not running then. A store with no backup yet (`last` None) missed nothing:
/// its first backup waits for the schedule or `BACKUP NOW`.
pub fn missed<Tz: TimeZone>(
    schedule: Schedule,
    last: Option<DateTime<FixedOffset>>,
    now: &DateTime<Tz>,
) -> Option<DateTime<Tz>> {
    let last = last?;
    let period = match schedule {
        Schedule::Off => return None,
        Schedule::Hourly { .. } => Duration::hours(1),
        Schedule::Daily { .. } => Duration::days(1),
        Schedule::Weekly { .. } => Duration::days(7),
    };
    let latest = next_after(schedule, &(now.clone() - period))?;
    (latest <= *now && last < latest).then_some(latest)
}

/// [`next_after`] in the machine's local time zone.
pub fn next_local(schedule: Schedule) -> Option<DateTime<Local>> {
    next_after(schedule, &Local::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{FixedOffset, Utc};

    fn t(s: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(s).unwrap()
    }

    #[test]
    fn daily_weekly_hourly_and_off() {
        let now = t("2026-11-25T01:00:00+01:00"); // a Wednesday
        let daily = Schedule::Daily {
            hour: 2,
            minute: 30,
        };
        assert_eq!(
            next_after(daily, &now),
            Some(t("2026-11-25T02:30:00+01:00"))
        );
        let now2 = t("2026-11-25T02:30:00+01:00");
        assert_eq!(
            next_after(daily, &now2),
            Some(t("2026-11-26T02:30:00+01:00"))
        );
        let weekly = Schedule::Weekly {
            weekday: 6,
            hour: 4,
            minute: 0,
        };
        assert_eq!(
            next_after(weekly, &now),
            Some(t("2026-11-29T04:00:00+01:00"))
        );
        let hourly = Schedule::Hourly { minute: 15 };
        assert_eq!(
            next_after(hourly, &now),
            Some(t("2026-11-25T01:15:00+01:00"))
        );
        let late = t("2026-11-25T23:20:00+01:00");
        assert_eq!(
            next_after(hourly, &late),
            Some(t("2026-11-26T00:15:00+01:00"))
        );
        assert_eq!(next_after(Schedule::Off, &now), None);
        let utc = Utc::now();
        assert!(next_after(daily, &utc).unwrap() > utc);
    }

    #[test]
    fn a_time_missed_since_the_newest_backup_is_made_up_once() {
        let daily = Schedule::Daily {
            hour: 2,
            minute: 30,
        };
        let now = t("2026-11-25T09:00:00+01:00");
        // Down over 02:30: the newest backup is from the day before.
        let yesterday = Some(t("2026-11-24T02:30:01+01:00"));
        assert_eq!(
            missed(daily, yesterday, &now),
            Some(t("2026-11-25T02:30:00+01:00"))
        );
        // Down for three days: one make-up, for the latest time.
        let long_ago = Some(t("2026-11-21T02:30:00+01:00"));
        assert_eq!(
            missed(daily, long_ago, &now),
            Some(t("2026-11-25T02:30:00+01:00"))
        );
        // Today's ran (at the time itself, or after it), or the made-up one did.
        for ran in ["2026-11-25T02:30:00+01:00", "2026-11-25T08:00:00+01:00"] {
            assert_eq!(missed(daily, Some(t(ran)), &now), None, "{ran}");
        }
        // Nothing before the time of today yet: yesterday's ran.
        let early = t("2026-11-25T02:00:00+01:00");
        assert_eq!(missed(daily, yesterday, &early), None);
        // No backup yet, or no schedule: nothing missed.
        assert_eq!(missed(daily, None, &now), None);
        assert_eq!(missed(Schedule::Off, long_ago, &now), None);
        let hourly = Schedule::Hourly { minute: 15 };
        assert_eq!(
            missed(hourly, Some(t("2026-11-25T07:15:02+01:00")), &now),
            Some(t("2026-11-25T08:15:00+01:00"))
        );
        let weekly = Schedule::Weekly {
            weekday: 6,
            hour: 4,
            minute: 0,
        };
        assert_eq!(
            missed(weekly, long_ago, &now),
            Some(t("2026-11-22T04:00:00+01:00"))
        );
        assert_eq!(missed(weekly, yesterday, &now), None);
    }
}
