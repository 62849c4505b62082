//! How the CLI shows things: rkt's tab-aligned tables, human sizes and times, one-line errors.

use std::time::{SystemTime, UNIX_EPOCH};

/// Aligns cells as Go's `tabwriter.NewWriter(w, 0, 8, 1, '\t', 0)` does for rkt: every cell
/// ends with a tab, and columns are padded with tabs to a multiple of 8.
pub fn tab_table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; columns];
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count() + 1);
        }
    }
    for w in &mut widths {
        *w = w.div_ceil(8) * 8;
    }
    let mut out = String::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            out.push_str(cell);
            let tabs = (widths[i] - cell.chars().count()).div_ceil(8);
            out.extend(std::iter::repeat_n('\t', tabs.max(1)));
        }
        out.push('\n');
    }
    out
}

/// `message` on one line, as rkt's errors are: control characters (a name read from a hostile
/// archive can hold a newline, and a library may quote it as it is) are written as escapes.
pub fn one_line(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for c in message.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Prints `value` as JSON on one line, or indented.
pub fn print_json(value: &impl serde::Serialize, pretty: bool) -> Result<(), serde_json::Error> {
    let text = if pretty { serde_json::to_string_pretty(value)? } else { serde_json::to_string(value)? };
    println!("{text}");
    Ok(())
}

/// A duration as Go prints one: `30m0s`, `24h0m0s`, `1m30s`.
pub fn human_duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, m, sec) => format!("{m}m{sec}s"),
        (h, m, sec) => format!("{h}h{m}m{sec}s"),
    }
}

/// Sizes as go-humanize's `IBytes`: `912 B`, `1.5 MiB`, `14 MiB`.
pub fn human_bytes(size: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if size < 10 {
        return format!("{size} B");
    }
    let exp = ((size as f64).ln() / 1024f64.ln()).floor() as usize;
    let exp = exp.min(UNITS.len() - 1);
    let value = ((size as f64) / 1024f64.powi(exp as i32) * 10.0 + 0.5).floor() / 10.0;
    if value < 10.0 {
        format!("{value:.1} {}", UNITS[exp])
    } else {
        format!("{value:.0} {}", UNITS[exp])
    }
}

/// A time relative to now, as go-humanize's `Time`: `now`, `5 minutes ago`, `2 days ago`.
pub fn human_time(ns: i64) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let secs = now - ns / 1_000_000_000;
    let (amount, unit, suffix) = if secs < 0 { (-secs, "", "from now") } else { (secs, "", "ago") };
    let _ = unit;
    const MINUTE: i64 = 60;
    const HOUR: i64 = 60 * MINUTE;
    const DAY: i64 = 24 * HOUR;
    const WEEK: i64 = 7 * DAY;
    const MONTH: i64 = 30 * DAY;
    const YEAR: i64 = 12 * MONTH;
    let text = match amount {
        0 => return "now".to_string(),
        1 => "1 second".to_string(),
        n if n < MINUTE => format!("{n} seconds"),
        n if n < 2 * MINUTE => "1 minute".to_string(),
        n if n < HOUR => format!("{} minutes", n / MINUTE),
        n if n < 2 * HOUR => "1 hour".to_string(),
        n if n < DAY => format!("{} hours", n / HOUR),
        n if n < 2 * DAY => "1 day".to_string(),
        n if n < WEEK => format!("{} days", n / DAY),
        n if n < 2 * WEEK => "1 week".to_string(),
        n if n < MONTH => format!("{} weeks", n / WEEK),
        n if n < 2 * MONTH => "1 month".to_string(),
        n if n < YEAR => format!("{} months", n / MONTH),
        n if n < 2 * YEAR => "1 year".to_string(),
        n => format!("{} years", n / YEAR),
    };
    format!("{text} {suffix}")
}

/// A time as rkt's `--full` prints it (`2006-01-02 15:04:05.999 -0700 MST`), in UTC.
pub fn full_time(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let millis = ns.rem_euclid(1_000_000_000) / 1_000_000;
    let days = secs.div_euclid(86400);
    let tod = secs.rem_euclid(86400);
    let (y, m, d) = civil_from_days(days);
    let mut frac = if millis == 0 { String::new() } else { format!(".{millis:03}") };
    while frac.ends_with('0') {
        frac.pop();
    }
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}{frac} +0000 UTC", tod / 3600, tod % 3600 / 60, tod % 60)
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_go_humanize() {
        assert_eq!(human_bytes(5), "5 B");
        assert_eq!(human_bytes(912), "912 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(14 * 1024 * 1024), "14 MiB");
    }

    #[test]
    fn full_times() {
        assert_eq!(full_time(0), "1970-01-01 00:00:00 +0000 UTC");
        assert_eq!(full_time(1_442_489_224_240_000_000), "2015-09-17 11:27:04.24 +0000 UTC");
    }

    #[test]
    fn table_alignment() {
        let t = tab_table(&[vec!["ID".into(), "NAME".into()], vec!["sha512-0123456789ab".into(), "x".into()]]);
        assert_eq!(t, "ID\t\t\tNAME\t\nsha512-0123456789ab\tx\t\n");
    }

    #[test]
    fn errors_stay_on_one_line() {
        assert_eq!(one_line("layer: entry \"a\nb\"\r\tx\u{1b}[31m"), "layer: entry \"a\\nb\"\\r\\tx\\u{1b}[31m");
        assert_eq!(one_line("plain, ünïcode"), "plain, ünïcode");
    }
}
