//! The fault schedule and the processes it acts on. After a warm-up, one fault every
//! `--fault-every-secs`, the kinds in turn (so each comes at least once in a run of 5 slots):
//! SIGKILL of a node and a restart under the same id and port; SIGSTOP of a node for 3 s; the
//! Redis paused (SIGSTOP) for 2–20 s; the Redis killed and restarted empty on its port after
//! 2–20 s; single sockets cut at the proxies. Each fault's window (start → recovered) is kept
//! so every chat can be put beside the fault it met.

use std::time::Duration;

use tokio::time::Instant;

use pam_loadtest::reconnect::SplitMix64;

use super::procs::{Node, NodeEnv, Redis, signal};
use super::proxy::Proxy;

/// A kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Fault {
    Kill,
    Stop,
    RedisPause,
    RedisKill,
    Cut,
}

impl Fault {
    /// The order they come in.
    pub(super) const CYCLE: [Fault; 5] = [Fault::Kill, Fault::Cut, Fault::Stop, Fault::RedisPause, Fault::RedisKill];

    pub(super) fn name(self) -> &'static str {
        match self {
            Fault::Kill => "node SIGKILL + restart",
            Fault::Stop => "node SIGSTOP 3 s",
            Fault::RedisPause => "Redis SIGSTOP",
            Fault::RedisKill => "Redis kill + restart",
            Fault::Cut => "sockets cut",
        }
    }
}

/// When a fault was on, since the run started.
#[derive(Debug, Clone)]
pub(super) struct Window {
    pub(super) fault: Fault,
    pub(super) start: Duration,
    pub(super) end: Duration,
    pub(super) detail: String,
}

/// What the faults act on.
pub(super) struct World {
    pub(super) nodes: Vec<Node>,
    pub(super) proxies: Vec<Proxy>,
    pub(super) redis: Redis,
    pub(super) env: NodeEnv,
}

/// The schedule's knobs.
pub(super) struct Schedule {
    pub(super) warmup: Duration,
    pub(super) every: Duration,
    /// No fault starts after this (the rest of the run is calm).
    pub(super) until: Duration,
    /// Sockets cut per `Cut`, spread over 5 s.
    pub(super) cuts: usize,
    pub(super) restart_after: Duration,
}

/// Runs the schedule on `world` from `started`; the windows, and the first error (a node that
/// did not come back), which stops the schedule.
pub(super) async fn run(world: &mut World, schedule: &Schedule, started: Instant, seed: u64) -> (Vec<Window>, Option<String>) {
    let mut rng = SplitMix64::new(seed);
    let mut windows = Vec::new();
    let mut at = schedule.warmup;
    let mut k = 0usize;
    while at <= schedule.until {
        tokio::time::sleep_until(started + at).await;
        let fault = Fault::CYCLE[k % Fault::CYCLE.len()];
        // Round r kills node r and stops node r + 1 (mod the node count).
        let node = (k / Fault::CYCLE.len() + usize::from(fault == Fault::Stop)) % world.nodes.len();
        let start = started.elapsed();
        eprintln!("== {:>5.1}s fault: {}", start.as_secs_f64(), fault.name());
        let detail = match apply(world, fault, node, schedule, &mut rng).await {
            Ok(detail) => detail,
            Err(error) => return (windows, Some(error)),
        };
        let end = started.elapsed();
        eprintln!("== {:>5.1}s recovered: {detail}", end.as_secs_f64());
        windows.push(Window { fault, start, end, detail });
        k += 1;
        at += schedule.every;
    }
    (windows, None)
}

/// 2–20 s, uniform.
fn outage(rng: &mut SplitMix64) -> Duration {
    Duration::from_millis(2_000 + rng.next_u64() % 18_001)
}

async fn apply(world: &mut World, fault: Fault, node: usize, schedule: &Schedule, rng: &mut SplitMix64) -> Result<String, String> {
    match fault {
        Fault::Kill => {
            let n = &mut world.nodes[node];
            n.process.kill();
            tokio::time::sleep(schedule.restart_after).await;
            n.start(&world.env).await?;
            Ok(format!("{} killed, restarted after {:.1} s", n.id, schedule.restart_after.as_secs_f64()))
        }
        Fault::Stop => {
            let n = &world.nodes[node];
            let pid = n.process.pid().ok_or("node not running")?;
            signal(pid, "-STOP")?;
            tokio::time::sleep(Duration::from_secs(3)).await;
            signal(pid, "-CONT")?;
            Ok(format!("{} stopped 3 s", n.id))
        }
        Fault::RedisPause => {
            let pid = world.redis.process.pid().ok_or("redis not running")?;
            let pause = outage(rng);
            signal(pid, "-STOP")?;
            tokio::time::sleep(pause).await;
            signal(pid, "-CONT")?;
            Ok(format!("Redis stopped {:.1} s", pause.as_secs_f64()))
        }
        Fault::RedisKill => {
            let down = outage(rng);
            world.redis.process.kill();
            tokio::time::sleep(down).await;
            world.redis.restart().await?;
            Ok(format!("Redis killed, restarted empty after {:.1} s", down.as_secs_f64()))
        }
        Fault::Cut => {
            let mut cut = 0;
            for _ in 0..schedule.cuts {
                let proxy = &world.proxies[(rng.next_u64() % world.proxies.len() as u64) as usize];
                cut += usize::from(proxy.cut_one(rng));
                tokio::time::sleep(Duration::from_secs(5) / schedule.cuts.max(1) as u32).await;
            }
            let open: usize = world.proxies.iter().map(Proxy::connections).sum();
            Ok(format!("{cut} sockets cut ({open} open through the proxies)"))
        }
    }
}

/// The fault a chat met: the first window that overlaps its life (first send → end), each window
/// stretched by `tail` (the cluster settling after it) but never past the next fault's start.
pub(super) fn met(windows: &[Window], sent: Duration, ended: Duration, tail: Duration) -> Option<Fault> {
    windows
        .iter()
        .enumerate()
        .find(|(n, w)| {
            // The tail never reaches into the next fault: a chat it disturbed is the next one's.
            let until = windows.get(n + 1).map_or(w.end + tail, |next| (w.end + tail).min(next.start));
            w.start <= ended && sent < until
        })
        .map(|(_, w)| w.fault)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chat_meets_the_first_window_its_life_overlaps() {
        let s = Duration::from_secs;
        let windows = [
            Window { fault: Fault::Kill, start: s(10), end: s(13), detail: String::new() },
            Window { fault: Fault::Cut, start: s(30), end: s(35), detail: String::new() },
        ];
        assert_eq!(met(&windows, s(2), s(5), s(5)), None);
        assert_eq!(met(&windows, s(8), s(11), s(5)), Some(Fault::Kill));
        assert_eq!(met(&windows, s(17), s(18), s(5)), Some(Fault::Kill), "within the tail");
        assert_eq!(met(&windows, s(19), s(20), s(5)), None);
        assert_eq!(met(&windows, s(12), s(31), s(5)), Some(Fault::Kill), "the first of two");
        let close = [
            Window { fault: Fault::RedisKill, start: s(10), end: s(28), detail: String::new() },
            Window { fault: Fault::Kill, start: s(30), end: s(32), detail: String::new() },
        ];
        assert_eq!(met(&close, s(31), s(33), s(5)), Some(Fault::Kill), "a tail stops at the next fault");
        assert_eq!(met(&close, s(29), s(29), s(5)), Some(Fault::RedisKill));
    }
}
