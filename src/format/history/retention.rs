//! Which versions a tree keeps (FORMAT.md §14.2): a pure function of their commit times,
//! the policy and the time now, so every machine and every test computes the same set.
//!
//! At most one version per UTC second is kept (the latest: snapshot names have second
//! precision). Of those, a version is kept when it is younger than `keep_all_secs`, or it
//! is the latest version of its UTC hour (day, month) and that hour (day, month) is one of
//! the last `hourly` (`daily`, `monthly`) ones, the current one included. The buckets nest
//! (the latest of a day is the latest of its hour), so applying the policy at every commit
//! keeps exactly what applying it once to all commits would keep.

const NS: i64 = 1_000_000_000;

/// A retention policy (`[history]` in the config). All zero: history off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Every version younger than this is kept.
    pub keep_all_secs: u64,
    /// The latest version of each of the last this many UTC hours.
    pub hourly: u32,
    /// The latest version of each of the last this many UTC days.
    pub daily: u32,
    /// The latest version of each of the last this many UTC calendar months.
    pub monthly: u32,
}

impl Default for Policy {
    /// Every commit of the last hour, hourly for two days, daily for 30 days.
    fn default() -> Policy {
        Policy {
            keep_all_secs: 3600,
            hourly: 48,
            daily: 30,
            monthly: 0,
        }
    }
}

impl Policy {
    pub const OFF: Policy = Policy {
        keep_all_secs: 0,
        hourly: 0,
        daily: 0,
        monthly: 0,
    };

    pub fn is_off(&self) -> bool {
        *self == Policy::OFF
    }
}

/// The commit times among `times` that `policy` keeps at `now` (Unix nanoseconds), sorted,
/// with the current version (committed at `current`) taking part in "the latest of its
/// bucket" but never returned: it is the root itself, not history.
pub fn retain(times: &[i64], current: i64, policy: &Policy, now: i64) -> Vec<i64> {
    if policy.is_off() {
        return Vec::new();
    }
    let mut all: Vec<i64> = times.iter().copied().chain([current]).collect();
    all.sort_unstable();
    all.dedup();
    // The latest of each second, then of each hour, day, month: each list is a sub-list of
    // the one before (buckets nest).
    let latest = |of: &[i64], bucket: &dyn Fn(i64) -> i64| -> Vec<i64> {
        of.iter()
            .enumerate()
            .filter(|(i, t)| of.get(i + 1).is_none_or(|n| bucket(*n) != bucket(**t)))
            .map(|(_, t)| *t)
            .collect()
    };
    let seconds = latest(&all, &|t| t.div_euclid(NS));
    let hours = latest(&seconds, &hour);
    let days = latest(&hours, &day);
    let months = latest(&days, &month);
    let within = |set: &[i64], t: i64, n: u32, bucket: fn(i64) -> i64| {
        n > 0 && bucket(now) - bucket(t) < i64::from(n) && set.binary_search(&t).is_ok()
    };
    let keep_all =
        i64::try_from(policy.keep_all_secs.saturating_mul(NS as u64)).unwrap_or(i64::MAX);
    seconds
        .iter()
        .copied()
        .filter(|t| *t != current)
        .filter(|t| {
            now.saturating_sub(*t) < keep_all
                || within(&hours, *t, policy.hourly, hour)
                || within(&days, *t, policy.daily, day)
                || within(&months, *t, policy.monthly, month)
        })
        .collect()
}

fn hour(t: i64) -> i64 {
    t.div_euclid(3600 * NS)
}

fn day(t: i64) -> i64 {
    t.div_euclid(86_400 * NS)
}

fn month(t: i64) -> i64 {
    use chrono::Datelike;
    let at = chrono::DateTime::from_timestamp_nanos(t);
    i64::from(at.year()) * 12 + i64::from(at.month0())
}
