//! What the benchmarks read off the running programs: CPU time from `/proc`, figures from `/metrics` text.

/// The kernel's clock ticks per second in `/proc/<pid>/stat` (`USER_HZ`: 100 on every Linux architecture greenflow
/// runs on).
const USER_HZ: f64 = 100.0;

/// CPU seconds (user + system, all threads) process `pid` has used so far; `None` without `/proc` or once it is gone.
pub(super) fn cpu_seconds(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_cpu(&text)
}

/// utime + stime (fields 14 and 15 of `/proc/<pid>/stat`) in seconds. The command name (field 2) is in parentheses
/// and may hold spaces and parentheses itself: fields are counted after the last `)`.
fn parse_stat_cpu(text: &str) -> Option<f64> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (the state).
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

/// CPU seconds the whole machine has been busy (all CPUs: everything but idle and iowait), from `/proc/stat`.
pub(super) fn machine_busy_seconds() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    parse_machine_busy(text.lines().next()?)
}

fn parse_machine_busy(line: &str) -> Option<f64> {
    let mut fields = line.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let ticks: Vec<f64> = fields.take(8).map(|f| f.parse().ok()).collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal
    let (idle, iowait) = (*ticks.get(3)?, *ticks.get(4)?);
    Some((ticks.iter().sum::<f64>() - idle - iowait) / USER_HZ)
}

/// The sum over every label set of metric `name` in exposition text; `None` when it does not appear.
pub(super) fn metric_sum(text: &str, name: &str) -> Option<f64> {
    let mut sum = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else { continue };
        let value = if let Some(labels) = rest.strip_prefix('{') {
            labels.rsplit_once('}').map(|(_, v)| v)
        } else if rest.starts_with(' ') {
            Some(rest)
        } else {
            None
        };
        if let Some(v) = value.and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse::<f64>().ok()) {
            *sum.get_or_insert(0.0) += v;
        }
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_from_a_stat_line_with_a_hostile_command_name() {
        let line = "4242 (we ird) (x) S 1 4242 4242 0 -1 4194560 123 0 0 0 250 75 0 0 20 0 12 0 1000 0 0";
        assert_eq!(parse_stat_cpu(line), Some(3.25));
        assert_eq!(cpu_seconds(std::process::id()).map(|s| s >= 0.0), Some(true));
    }

    #[test]
    fn machine_busy_time_leaves_out_idle_and_iowait() {
        assert_eq!(parse_machine_busy("cpu  100 5 50 1000 20 3 2 0 0 0"), Some(1.6));
        assert_eq!(parse_machine_busy("cpu0 100 5 50 1000 20 3 2 0 0 0"), None);
        assert!(machine_busy_seconds().is_some_and(|s| s > 0.0));
    }

    #[test]
    fn sums_every_label_set_and_only_that_name() {
        let text = "# TYPE vm_rows_inserted_total counter\nvm_rows_inserted_total{type=\"promremotewrite\"} 1.5e+06\n\
                    vm_rows_inserted_total{type=\"vmimport\"} 10\nvm_rows_inserted_total_other 99\n\
                    vm_rows_inserted_totalx{a=\"b\"} 7\nplain 3\n";
        assert_eq!(metric_sum(text, "vm_rows_inserted_total"), Some(1_500_010.0));
        assert_eq!(metric_sum(text, "plain"), Some(3.0));
        assert_eq!(metric_sum(text, "missing"), None);
    }
}
