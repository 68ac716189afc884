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

/// User + system CPU time in seconds, summed over the pids, to the nanosecond.
pub fn cpu_secs(pids: &[u32]) -> f64 {
    CpuSnap::of(pids).total
}

/// The CPU a set of processes has used, at one moment. Two snapshots give a window's CPU.
///
/// The total comes from each process's CPU-time clock (`clock_getcpuclockid`: nanoseconds, the
/// process's exited threads included). /proc's `utime` and `stime` move in 10 ms ticks, which over
/// a 2 s round of 0.3 core was ±7 %, as much as the differences being measured; they are kept
/// only to split the precise total into user and kernel time.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuSnap {
    user_ticks: f64,
    sys_ticks: f64,
    total: f64,
}

impl CpuSnap {
    pub fn of(pids: &[u32]) -> CpuSnap {
        let mut snap = CpuSnap::default();
        for &p in pids {
            let Some(f) = stat_fields(p) else { continue };
            let u: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0);
            let s: f64 = f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
            snap.user_ticks += u;
            snap.sys_ticks += s;
            // A process the clock cannot be read for counts by its ticks.
            snap.total += precise_secs(p).unwrap_or((u + s) / TICKS);
        }
        snap
    }

    /// (user, system) CPU seconds since `earlier`: the precise total, split as the ticks were.
    pub fn since(&self, earlier: &CpuSnap) -> (f64, f64) {
        let total = (self.total - earlier.total).max(0.0);
        let (du, ds) = (
            self.user_ticks - earlier.user_ticks,
            self.sys_ticks - earlier.sys_ticks,
        );
        let user_share = if du + ds > 0.0 { du / (du + ds) } else { 0.5 };
        (total * user_share, total * (1.0 - user_share))
    }
}

/// The CPU seconds `pid` has used (all its threads, exited ones included), from its CPU-time clock.
fn precise_secs(pid: u32) -> Option<f64> {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).ok()?);
    let clock = nix::time::clock_getcpuclockid(pid).ok()?;
    let t = nix::time::clock_gettime(clock).ok()?;
    Some(t.tv_sec() as f64 + t.tv_nsec() as f64 * 1e-9)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_process_cpu_is_read_to_the_nanosecond() {
        // A child that spins, then sleeps: its CPU clock is readable from here and moves by the
        // time it spun, which /proc's ticks would round to 10 ms.
        let mut child = std::process::Command::new("sh")
            .args([
                "-c",
                "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; exec sleep 5",
            ])
            .spawn()
            .expect("sh");
        let pid = child.id();
        let a = CpuSnap::of(&[pid]);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .is_ok_and(|c| c.trim() != "sleep")
            && std::time::Instant::now() < deadline
        {
            std::thread::yield_now();
        }
        let b = CpuSnap::of(&[pid]);
        let clock = precise_secs(pid);
        let _ = child.kill();
        let _ = child.wait();
        assert!(clock.is_some(), "the child's CPU clock is readable");
        let (user, sys) = b.since(&a);
        assert!(user + sys > 0.0, "the spin used CPU: {a:?} -> {b:?}");
        assert!(
            ((user + sys) * 100.0).fract() != 0.0,
            "not in ticks: {}",
            user + sys
        );
    }
}
