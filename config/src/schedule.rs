//! When scheduled backups run: `off`, `hourly MM`, `daily HH:MM`, `weekly DAY HH:MM`
//! (local time).

use std::fmt;
use std::str::FromStr;

/// A backup schedule from `backup.schedule`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// No scheduled backups (`BACKUP NOW` and `kohaproxy backup run` still work).
    Off,
    /// Every hour at `minute`.
    Hourly {
        /// 0..=59.
        minute: u8,
    },
    /// Every day at `hour:minute` local time.
    Daily {
        /// 0..=23.
        hour: u8,
        /// 0..=59.
        minute: u8,
    },
    /// Every week on `weekday` (0 = Monday) at `hour:minute` local time.
    Weekly {
        /// 0 = Monday ... 6 = Sunday.
        weekday: u8,
        /// 0..=23.
        hour: u8,
        /// 0..=59.
        minute: u8,
    },
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// What the forms are, for error messages.
pub const SCHEDULE_FORMS: &str =
    "expected \"off\", \"hourly MM\", \"daily HH:MM\" or \"weekly DAY HH:MM\" (DAY: mon..sun)";

fn clock(s: &str) -> Option<(u8, u8)> {
    let (h, m) = s.split_once(':')?;
    let (h, m): (u8, u8) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60 && s.len() <= 5).then_some((h, m))
}

impl FromStr for Schedule {
    type Err = String;

    fn from_str(s: &str) -> Result<Schedule, String> {
        let lower = s.trim().to_ascii_lowercase();
        let words: Vec<&str> = lower.split_whitespace().collect();
        let bad = || format!("{:?}: {SCHEDULE_FORMS}", s.trim());
        match words.as_slice() {
            ["off"] | ["never"] => Ok(Schedule::Off),
            ["hourly", m] => {
                let minute: u8 = m.trim_start_matches(':').parse().map_err(|_| bad())?;
                (minute < 60)
                    .then_some(Schedule::Hourly { minute })
                    .ok_or_else(bad)
            }
            ["daily", t] => {
                let (hour, minute) = clock(t).ok_or_else(bad)?;
                Ok(Schedule::Daily { hour, minute })
            }
            ["weekly", d, t] => {
                let weekday = DAYS
                    .iter()
                    .position(|day| d.starts_with(day))
                    .ok_or_else(bad)? as u8;
                let (hour, minute) = clock(t).ok_or_else(bad)?;
                Ok(Schedule::Weekly {
                    weekday,
                    hour,
                    minute,
                })
            }
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Schedule::Off => f.write_str("off"),
            Schedule::Hourly { minute } => write!(f, "hourly {minute:02}"),
            Schedule::Daily { hour, minute } => write!(f, "daily {hour:02}:{minute:02}"),
            Schedule::Weekly {
                weekday,
                hour,
                minute,
            } => write!(
                f,
                "weekly {} {hour:02}:{minute:02}",
                DAYS[weekday as usize % 7]
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Schedule;

    #[test]
    fn forms_parse_and_print_back() {
        for (text, want) in [
            ("off", Schedule::Off),
            ("hourly 15", Schedule::Hourly { minute: 15 }),
            ("hourly :05", Schedule::Hourly { minute: 5 }),
            (
                "daily 02:30",
                Schedule::Daily {
                    hour: 2,
                    minute: 30,
                },
            ),
            (
                "  Daily 23:59 ",
                Schedule::Daily {
                    hour: 23,
                    minute: 59,
                },
            ),
            (
                "weekly sunday 04:00",
                Schedule::Weekly {
                    weekday: 6,
                    hour: 4,
                    minute: 0,
                },
            ),
        ] {
            assert_eq!(text.parse::<Schedule>(), Ok(want), "{text}");
            let again: Schedule = want.to_string().parse().unwrap();
            assert_eq!(again, want);
        }
    }

    #[test]
    fn bad_forms_say_what_is_expected() {
        for text in [
            "",
            "daily",
            "daily 24:00",
            "daily 2:60",
            "daily 02:30:00",
            "hourly 60",
            "weekly 02:00",
            "weekly funday 02:00",
            "monthly 1 02:00",
            "daily 02:30 extra",
        ] {
            let err = text.parse::<Schedule>().unwrap_err();
            assert!(err.contains("expected \"off\""), "{text}: {err}");
        }
    }
}
