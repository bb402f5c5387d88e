//! What each virtual user of `push-soak` does, drawn once from a seed before the run: its dialect
//! (legacy, answering JSON pings like today's browser client, or v2, acking like the SDK), the
//! node it starts on, and for the disrupted share of sockets when and how the socket goes bad
//! (black-holed: the client stops reading and answering but keeps the connection open, no FIN;
//! or reset: SO_LINGER 0 then close, an RST), whether the user comes back, after how long, and
//! whether a v2 user resumes its stream. Pure (no I/O), so the draw is unit-tested.

use std::time::Duration;

use pam_loadtest::reconnect::SplitMix64;

/// The protocol a socket speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dialect {
    Legacy,
    V2,
}

/// How a disrupted socket goes bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Disruption {
    /// Stops reading and answering; the connection stays open (no FIN).
    BlackHole,
    /// SO_LINGER 0, then closed: the server gets an RST.
    Reset,
}

/// A disrupted socket: when (after the traffic starts), how, and what the user does next.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Disrupt {
    pub(super) after: Duration,
    pub(super) how: Disruption,
    /// `Some(delay)`: the user connects again this long after the disruption; `None`: stays away.
    pub(super) comeback: Option<Duration>,
    /// v2 only: the comeback sends `resume {stream_id, epoch, last_seq}` (the SDK does).
    pub(super) resume: bool,
}

/// One virtual user's plan.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct UserPlan {
    pub(super) dialect: Dialect,
    /// 0 = node A, 1 = node B.
    pub(super) node: usize,
    pub(super) disrupt: Option<Disrupt>,
}

/// The shares the plan is drawn with.
#[derive(Debug, Clone)]
pub(super) struct Shares {
    pub(super) users: usize,
    pub(super) v2: f64,
    pub(super) disrupted: f64,
    pub(super) black_holed: f64,
    pub(super) comeback: f64,
    pub(super) resume: f64,
    /// Traffic runs this long; disruptions fall in its 10–70 %, comebacks 2–20 s later and
    /// before its 85 % (later ones stay away), so every comeback is live well before the end.
    pub(super) duration: Duration,
}

/// Draws every user's plan: users alternate between the nodes; exactly
/// `round(users × disrupted)` of them are disrupted (a random subset), of those
/// `round(n × black_holed)` black-holed and the rest reset.
pub(super) fn draw(shares: &Shares, rng: &mut SplitMix64) -> Vec<UserPlan> {
    let users = shares.users;
    let disrupted = ((users as f64) * shares.disrupted.clamp(0.0, 1.0)).round() as usize;
    let black_holed = ((disrupted as f64) * shares.black_holed.clamp(0.0, 1.0)).round() as usize;
    let chosen = sample(users, disrupted, rng);
    let mut plans: Vec<UserPlan> = (0..users)
        .map(|n| UserPlan { dialect: if rng.next_f64() < shares.v2 { Dialect::V2 } else { Dialect::Legacy }, node: n % 2, disrupt: None })
        .collect();
    let length = shares.duration.as_secs_f64();
    for (k, &n) in chosen.iter().enumerate() {
        let after = length * (0.1 + 0.6 * rng.next_f64());
        let delay = 2.0 + 18.0 * rng.next_f64();
        let comes_back = rng.next_f64() < shares.comeback && after + delay <= length * 0.85;
        let resume = plans[n].dialect == Dialect::V2 && rng.next_f64() < shares.resume;
        plans[n].disrupt = Some(Disrupt {
            after: Duration::from_secs_f64(after),
            how: if k < black_holed { Disruption::BlackHole } else { Disruption::Reset },
            comeback: comes_back.then(|| Duration::from_secs_f64(delay)),
            resume,
        });
    }
    plans
}

/// `k` distinct indices out of `0..n`, in random order (a partial Fisher–Yates shuffle).
fn sample(n: usize, k: usize, rng: &mut SplitMix64) -> Vec<usize> {
    let mut all: Vec<usize> = (0..n).collect();
    let k = k.min(n);
    for i in 0..k {
        let j = i + (rng.next_u64() % (n - i) as u64) as usize;
        all.swap(i, j);
    }
    all.truncate(k);
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shares(users: usize) -> Shares {
        Shares { users, v2: 0.5, disrupted: 0.2, black_holed: 0.5, comeback: 0.5, resume: 0.5, duration: Duration::from_secs(180) }
    }

    #[test]
    fn exactly_the_disrupted_share_goes_bad_half_black_holed_half_reset() {
        let plans = draw(&shares(1000), &mut SplitMix64::new(7));
        let disrupted: Vec<&Disrupt> = plans.iter().filter_map(|p| p.disrupt.as_ref()).collect();
        assert_eq!(disrupted.len(), 200);
        assert_eq!(disrupted.iter().filter(|d| d.how == Disruption::BlackHole).count(), 100);
        assert_eq!(plans.iter().filter(|p| p.node == 0).count(), 500, "users alternate between the nodes");
        let v2 = plans.iter().filter(|p| p.dialect == Dialect::V2).count();
        assert!((400..600).contains(&v2), "{v2} v2 users");
    }

    #[test]
    fn disruptions_and_comebacks_fall_inside_the_traffic() {
        let plans = draw(&shares(1000), &mut SplitMix64::new(11));
        let (mut back, mut away) = (0, 0);
        for (plan, d) in plans.iter().filter_map(|p| p.disrupt.as_ref().map(|d| (p, d))) {
            let after = d.after.as_secs_f64();
            assert!((18.0..=126.0).contains(&after), "{after}");
            match d.comeback {
                Some(delay) => {
                    back += 1;
                    assert!((2.0..=20.0).contains(&delay.as_secs_f64()));
                    assert!(after + delay.as_secs_f64() <= 153.0);
                }
                None => away += 1,
            }
            assert!(!d.resume || plan.dialect == Dialect::V2, "only v2 sockets resume");
        }
        assert!(back > 50 && away > 50, "{back} come back, {away} stay away");
    }

    #[test]
    fn the_same_seed_draws_the_same_plan() {
        assert_eq!(draw(&shares(50), &mut SplitMix64::new(3)), draw(&shares(50), &mut SplitMix64::new(3)));
        assert_ne!(draw(&shares(50), &mut SplitMix64::new(3)), draw(&shares(50), &mut SplitMix64::new(4)));
    }

    #[test]
    fn a_sample_has_distinct_indices_in_range() {
        let mut picked = sample(10, 10, &mut SplitMix64::new(1));
        picked.sort_unstable();
        assert_eq!(picked, (0..10).collect::<Vec<_>>());
        assert_eq!(sample(3, 9, &mut SplitMix64::new(1)).len(), 3);
    }
}
