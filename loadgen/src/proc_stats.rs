//! What /proc says about the systems under test: RSS and CPU of a process tree, kernel slab, and
//! how busy each core of the machine was.

use std::collections::HashMap;

/// The pid and all its descendants.
pub fn tree(root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(ppid) = stat_fields(pid).and_then(|f| f.get(1).and_then(|p| p.parse().ok()))
            {
                children.entry(ppid).or_default().push(pid);
            }
        }
    }
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        if let Some(c) = children.get(&out[i]) {
            out.extend(c);
        }
        i += 1;
    }
    out
}

/// Fields of /proc/PID/stat after the command name: [state, ppid, …]; index 11/12 = utime/stime.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &s[s.rfind(')')? + 2..];
    Some(after.split_whitespace().map(str::to_string).collect())
}

/// Resident set size in KiB, summed over the pids.
pub fn rss_kib(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
        .filter_map(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
            })
        })
        .sum()
}

/// USER_HZ: 100 on every Linux ABI this runs on.
const TICKS: f64 = 100.0;

/// User + system CPU time in seconds, summed over the pids.
pub fn cpu_secs(pids: &[u32]) -> f64 {
    let (u, s) = cpu_split(pids);
    u + s
}

/// (user, system) CPU time in seconds, summed over the pids (`utime`, `stime` of
/// /proc/PID/stat: a 10 ms tick, so measure over seconds, not milliseconds).
pub fn cpu_split(pids: &[u32]) -> (f64, f64) {
    pids.iter()
        .filter_map(|p| stat_fields(*p))
        .map(|f| {
            let u: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0);
            let s: f64 = f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
            (u / TICKS, s / TICKS)
        })
        .fold((0.0, 0.0), |(a, b), (u, s)| (a + u, b + s))
}

/// Per-core (busy, total) jiffies from /proc/stat, cpu0 first: busy is everything but idle and
/// iowait. Two snapshots give each core's busy share over the interval.
pub fn core_jiffies() -> Vec<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .map(|l| {
            let v: Vec<u64> = l
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            let total: u64 = v.iter().take(8).sum();
            let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
            (total - idle, total)
        })
        .collect()
}

/// Each core's busy share (0–1) between two `core_jiffies` snapshots.
pub fn core_busy(before: &[(u64, u64)], after: &[(u64, u64)]) -> Vec<f64> {
    before
        .iter()
        .zip(after)
        .map(|((b0, t0), (b1, t1))| {
            let dt = t1.saturating_sub(*t0);
            if dt == 0 {
                0.0
            } else {
                b1.saturating_sub(*b0) as f64 / dt as f64
            }
        })
        .collect()
}

/// Kernel slab (`Slab:` of /proc/meminfo) in KiB: machine-wide, so only deltas mean anything.
pub fn slab_kib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Slab:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// CPU seconds of the process tree under `root`, the root included, with the children each one
/// has already reaped (cutime, cstime): everything the tree has run, exited processes included.
pub fn tree_cpu_with_reaped(root: u32) -> f64 {
    tree(root)
        .iter()
        .filter_map(|p| stat_fields(*p))
        .map(|f| {
            (11..=14)
                .filter_map(|i| f.get(i).and_then(|v| v.parse::<f64>().ok()))
                .sum::<f64>()
                / TICKS
        })
        .sum()
}

/// Busy CPU seconds of the whole machine, all cores (everything but idle and iowait).
pub fn machine_busy_secs() -> f64 {
    core_jiffies().iter().map(|(b, _)| *b as f64).sum::<f64>() / TICKS
}

/// What the machine ran besides one process tree, between two snapshots: the box is shared, and
/// another process's CPU is CPU the measured systems did not get.
#[derive(Clone, Copy, Debug)]
pub struct OtherLoad {
    t: std::time::Instant,
    busy: f64,
    own: f64,
}

impl OtherLoad {
    pub fn start() -> Self {
        OtherLoad {
            t: std::time::Instant::now(),
            busy: machine_busy_secs(),
            own: tree_cpu_with_reaped(std::process::id()),
        }
    }

    /// (seconds, machine busy core-seconds, this tree's core-seconds, everything else's).
    pub fn since(&self) -> (f64, f64, f64, f64) {
        let busy = machine_busy_secs() - self.busy;
        let own = tree_cpu_with_reaped(std::process::id()) - self.own;
        (
            self.t.elapsed().as_secs_f64(),
            busy,
            own,
            (busy - own).max(0.0),
        )
    }
}
