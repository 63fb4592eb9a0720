//! Readers for `/proc`: CPU time and peak resident memory of a process (the server child, or
//! this process for the load generator's own cost), each thread's scheduler counters (where
//! the server's time goes: on the CPU, waiting for one, how often it sleeps and is woken) and
//! the machine's idle time.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

/// CPU time consumed by a process up to a moment, from two sources: `/proc/<pid>/stat`
/// (utime + stime in clock ticks, includes threads that have exited) and the sum of
/// `/proc/<pid>/task/*/schedstat` (nanoseconds on CPU, precise, live threads only).
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuSample {
    ticks: u64,
    sched_ns: u64,
}

impl CpuSample {
    /// Reads the current totals of `pid`; zero on a process that is gone.
    pub fn take(pid: u32) -> CpuSample {
        CpuSample {
            ticks: stat_ticks(pid).unwrap_or(0),
            sched_ns: schedstat_ns(pid),
        }
    }

    /// CPU time spent between `self` and a later sample. The larger of the two readings wins:
    /// schedstat is precise but misses threads that exited in between; stat has tick
    /// granularity but keeps them.
    pub fn until(&self, later: &CpuSample) -> Duration {
        let ticks = later.ticks.saturating_sub(self.ticks);
        let from_ticks = ticks.saturating_mul(1_000_000_000) / clock_ticks_per_second();
        let from_sched = later.sched_ns.saturating_sub(self.sched_ns);
        Duration::from_nanos(from_ticks.max(from_sched))
    }
}

/// CPU samples of the PostgreSQL backends serving database `name` (their process titles read
/// `postgres: ... <user> <name> <client> <state>`), by pid.
pub fn postgres_backends(name: &str) -> BTreeMap<u32, CpuSample> {
    let needle = format!(" {name} ");
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return BTreeMap::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|raw| {
                let title = String::from_utf8_lossy(&raw).replace('\0', " ");
                title.starts_with("postgres:") && title.contains(&needle)
            })
        })
        .map(|pid| (pid, CpuSample::take(pid)))
        .collect()
}

/// CPU time the processes of `later` spent since `earlier` (a process absent from `earlier`
/// counts from its start).
pub fn group_cpu(earlier: &BTreeMap<u32, CpuSample>, later: &BTreeMap<u32, CpuSample>) -> Duration {
    later
        .iter()
        .map(|(pid, end)| earlier.get(pid).copied().unwrap_or_default().until(end))
        .sum()
}

/// Peak resident set size (`VmHWM`) of `pid` in kB.
pub fn peak_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse().ok())
}

/// One thread's scheduler counters up to a moment: `/proc/<pid>/task/<tid>/schedstat` (ns on
/// a CPU, ns runnable but waiting on a run queue) and `status`'s voluntary context switches
/// (each one a sleep the thread was later woken from).
#[derive(Debug, Clone, Copy, Default)]
pub struct ThreadCounters {
    /// Time on a CPU.
    pub on_cpu_ns: u64,
    /// Time runnable but waiting for a CPU.
    pub run_queue_ns: u64,
    /// Sleeps (blocking on a channel, a lock, I/O): the wake-ups that follow them.
    pub wakeups: u64,
}

impl ThreadCounters {
    fn since(&self, earlier: &ThreadCounters) -> ThreadCounters {
        ThreadCounters {
            on_cpu_ns: self.on_cpu_ns.saturating_sub(earlier.on_cpu_ns),
            run_queue_ns: self.run_queue_ns.saturating_sub(earlier.run_queue_ns),
            wakeups: self.wakeups.saturating_sub(earlier.wakeups),
        }
    }

    fn add(&mut self, other: &ThreadCounters) {
        self.on_cpu_ns += other.on_cpu_ns;
        self.run_queue_ns += other.run_queue_ns;
        self.wakeups += other.wakeups;
    }
}

/// Every live thread of `pid` by thread id, with its name (`comm`).
pub fn threads(pid: u32) -> BTreeMap<u32, (String, ThreadCounters)> {
    let tasks = PathBuf::from(format!("/proc/{pid}/task"));
    let Ok(entries) = std::fs::read_dir(&tasks) else {
        return BTreeMap::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let tid = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let dir = entry.path();
            let name = std::fs::read_to_string(dir.join("comm")).ok()?;
            let sched = std::fs::read_to_string(dir.join("schedstat")).ok()?;
            let mut fields = sched.split_whitespace().map(|f| f.parse::<u64>().ok());
            let on_cpu_ns = fields.next()??;
            let run_queue_ns = fields.next()??;
            let status = std::fs::read_to_string(dir.join("status")).ok()?;
            let wakeups = status
                .lines()
                .find_map(|line| line.strip_prefix("voluntary_ctxt_switches:"))
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(0);
            let counters = ThreadCounters {
                on_cpu_ns,
                run_queue_ns,
                wakeups,
            };
            Some((tid, (name.trim().to_owned(), counters)))
        })
        .collect()
}

/// A group of threads of one kind (the same name but for a trailing number) and what they
/// spent between two samples.
#[derive(Debug, Clone, Default)]
pub struct ThreadGroup {
    /// The threads' name with any trailing number dropped (`sqlite-reader`).
    pub name: String,
    /// How many threads were seen.
    pub threads: usize,
    /// Their summed counters over the window.
    pub spent: ThreadCounters,
}

/// What each kind of thread spent between `earlier` and `later` (a thread absent from
/// `earlier` counts from its start), busiest first.
pub fn thread_groups(
    earlier: &BTreeMap<u32, (String, ThreadCounters)>,
    later: &BTreeMap<u32, (String, ThreadCounters)>,
) -> Vec<ThreadGroup> {
    let mut groups: BTreeMap<String, ThreadGroup> = BTreeMap::new();
    for (tid, (name, end)) in later {
        let start = earlier.get(tid).map(|(_, c)| *c).unwrap_or_default();
        let kind = thread_kind(name);
        let group = groups.entry(kind.clone()).or_insert_with(|| ThreadGroup {
            name: kind,
            ..ThreadGroup::default()
        });
        group.threads += 1;
        group.spent.add(&end.since(&start));
    }
    let mut groups: Vec<ThreadGroup> = groups.into_values().collect();
    groups.sort_by_key(|group| std::cmp::Reverse(group.spent.on_cpu_ns));
    groups
}

/// A thread's name without the number that tells threads of one kind apart.
fn thread_kind(name: &str) -> String {
    name.trim_end_matches(|c: char| c.is_ascii_digit())
        .trim_end_matches(['-', '_', ' '])
        .to_owned()
}

/// Idle time of the whole machine so far (`idle` + `iowait` of `/proc/stat`'s `cpu` line), ns.
pub fn machine_idle_ns() -> u64 {
    let Ok(text) = std::fs::read_to_string("/proc/stat") else {
        return 0;
    };
    let Some(line) = text.lines().find(|l| l.starts_with("cpu ")) else {
        return 0;
    };
    let ticks: u64 = line
        .split_whitespace()
        .skip(4)
        .take(2)
        .filter_map(|f| f.parse::<u64>().ok())
        .sum();
    ticks.saturating_mul(1_000_000_000) / clock_ticks_per_second()
}

/// utime + stime (fields 14 and 15) of `/proc/<pid>/stat`, in clock ticks.
fn stat_ticks(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count fields after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state), so field N is at index N - 3.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Sum of the first field (ns on CPU) of every thread's schedstat.
fn schedstat_ns(pid: u32) -> u64 {
    let tasks = PathBuf::from(format!("/proc/{pid}/task"));
    let Ok(entries) = std::fs::read_dir(&tasks) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| std::fs::read_to_string(entry.path().join("schedstat")).ok())
        .filter_map(|text| text.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// `sysconf(_SC_CLK_TCK)` without `unsafe`: asked once from `getconf CLK_TCK` (100 if absent).
fn clock_ticks_per_second() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|&t| t > 0)
            .unwrap_or(100)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_has_cpu_time_and_rss() {
        let pid = std::process::id();
        let before = CpuSample::take(pid);
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let after = CpuSample::take(pid);
        assert!(before.until(&after) > Duration::ZERO);
        assert!(peak_rss_kb(pid).unwrap() > 0);
    }

    /// This test's own thread shows up with its CPU time, and threads of one kind group
    /// under one name.
    #[test]
    fn threads_are_read_and_grouped_by_kind() {
        let pid = std::process::id();
        let before = threads(pid);
        let worker = std::thread::Builder::new()
            .name("bench-probe-7".into())
            .spawn(move || {
                let mut x = 0u64;
                for i in 0..5_000_000u64 {
                    x = x.wrapping_mul(31).wrapping_add(i);
                }
                std::hint::black_box(x);
                std::thread::sleep(Duration::from_millis(20));
                threads(pid)
            })
            .unwrap();
        let during = worker.join().unwrap();
        let groups = thread_groups(&before, &during);
        let probe = groups.iter().find(|g| g.name == "bench-probe").unwrap();
        assert_eq!(probe.threads, 1);
        assert!(probe.spent.on_cpu_ns > 0);
        assert!(probe.spent.wakeups >= 1, "the sleep is a voluntary switch");
        assert_eq!(thread_kind("sqlite-reader-12"), "sqlite-reader");
        assert_eq!(thread_kind("tokio-runtime-w"), "tokio-runtime-w");
        assert!(machine_idle_ns() > 0);
    }
}
