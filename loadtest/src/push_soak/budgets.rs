//! `push-soak`'s budgets, on the runner's side: the budgets it gives a subset of users, the
//! expense rows each bulk insert adds (thousands in one statement), the month-to-date spend those
//! add up to, and from it the budget alerts the gateway must store — exactly one row per (budget,
//! month, threshold) reached, with the gateway's rule (`alert_threshold`, default 80, when it is
//! in (0, 100), and 100 %; a threshold is reached when the spend in cents is at least
//! `limit × threshold / 100`). Pure (the SQL is in `db`), so the expectation is unit-tested.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use pam_loadtest::reconnect::SplitMix64;

/// The gateway's `alert_threshold` when a budget has none.
const DEFAULT_THRESHOLD: u32 = 80;
/// The categories budgets are drawn from; expenses outside them touch no budget.
pub(super) const CATEGORIES: [&str; 3] = ["fuel", "food", "camping"];
/// The category of expenses that no budget covers (they still queue their user for a check).
pub(super) const UNBUDGETED: &str = "souvenirs";

/// One budget of a user (a whole-dollar monthly limit).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Budget {
    pub(super) id: String,
    pub(super) user: String,
    pub(super) category: String,
    pub(super) limit_dollars: u32,
    /// `alert_threshold` in %; `None` stores NULL (the gateway's default, 80).
    pub(super) threshold: Option<u32>,
    /// The user's month, `yyyy-mm`, in the user's timezone.
    pub(super) month: String,
}

impl Budget {
    /// The thresholds this budget alerts at, lowest first.
    fn thresholds(&self) -> Vec<u32> {
        let configured = self.threshold.unwrap_or(DEFAULT_THRESHOLD);
        let mut thresholds = Vec::with_capacity(2);
        if configured > 0 && configured < 100 {
            thresholds.push(configured);
        }
        thresholds.push(100);
        thresholds
    }

    fn key(&self, threshold: u32) -> String {
        format!("budget:{}:{}:{threshold}", self.id, self.month)
    }

    /// The dedupe keys `spent_cents` reaches.
    fn reached(&self, spent_cents: u64) -> impl Iterator<Item = String> + '_ {
        let limit = u64::from(self.limit_dollars);
        self.thresholds().into_iter().filter(move |t| spent_cents >= limit * u64::from(*t)).map(|t| self.key(t))
    }
}

/// One expense row: user, category, amount in cents.
pub(super) type Expense = (String, &'static str, u64);

/// The budgets and what was spent against them.
#[derive(Debug, Default)]
pub(super) struct BudgetBook {
    pub(super) budgets: Vec<Budget>,
    /// (user, category) → cents spent this month.
    spent: HashMap<(String, String), u64>,
    /// Dedupe key → the runner's stamp (µs) of the insert that reached it.
    crossed_at: BTreeMap<String, u64>,
}

impl BudgetBook {
    pub(super) fn new(budgets: Vec<Budget>) -> Self {
        Self { budgets, ..Self::default() }
    }

    /// An insert statement committed with `rows` at `stamp` (µs): the spend grows, and the keys
    /// it reached first are stamped with it.
    pub(super) fn committed(&mut self, rows: &[Expense], stamp: u64) {
        for (user, category, cents) in rows {
            *self.spent.entry((user.clone(), category.to_string())).or_default() += cents;
        }
        for budget in &self.budgets {
            let spent = self.spent.get(&(budget.user.clone(), budget.category.clone())).copied().unwrap_or(0);
            for key in budget.reached(spent) {
                self.crossed_at.entry(key).or_insert(stamp);
            }
        }
    }

    /// Every dedupe key the spend reached, with the stamp of the insert that reached it.
    pub(super) fn expected(&self) -> &BTreeMap<String, u64> {
        &self.crossed_at
    }

    /// The rows of one bulk insert, about `rows` of them: a quarter of the budgets (at least one)
    /// each get 5–45 % of their limit spread over their share of the rows, and a tenth of the
    /// rows go to `others` (users without budgets) or an unbudgeted category.
    pub(super) fn bulk(&self, rows: usize, others: &[String], rng: &mut SplitMix64) -> Vec<Expense> {
        let mut out = Vec::with_capacity(rows);
        let noise = rows / 10;
        for _ in 0..noise {
            let pick = rng.next_u64() as usize;
            let user = match (others.is_empty(), self.budgets.is_empty()) {
                (false, _) => others[pick % others.len()].clone(),
                (true, false) => self.budgets[pick % self.budgets.len()].user.clone(),
                (true, true) => break,
            };
            out.push((user, UNBUDGETED, 100 + rng.next_u64() % 5_000));
        }
        if self.budgets.is_empty() {
            return out;
        }
        let chosen = (self.budgets.len() / 4).max(1);
        let per_budget = ((rows - noise) / chosen).max(1);
        for _ in 0..chosen {
            let budget = &self.budgets[rng.next_u64() as usize % self.budgets.len()];
            let category = CATEGORIES.iter().copied().find(|c| *c == budget.category).unwrap_or(UNBUDGETED);
            let share = 0.05 + 0.40 * rng.next_f64();
            let total = (f64::from(budget.limit_dollars) * 100.0 * share) as u64;
            let each = (total / per_budget as u64).max(1);
            out.extend((0..per_budget).map(|_| (budget.user.clone(), category, each)));
        }
        out
    }
}

/// The stored budget alerts against the expected ones.
#[derive(Debug, Default, PartialEq)]
pub(super) struct KeyAudit {
    pub(super) expected: u64,
    pub(super) stored: u64,
    /// Expected keys without a row.
    pub(super) missing: u64,
    /// Rows whose key no insert reached.
    pub(super) extra: u64,
    /// Keys with more than one row (rows beyond the first).
    pub(super) doubled: u64,
}

/// Compares the dedupe keys of the stored budget-alert rows with the expected ones.
pub(super) fn compare_keys(expected: &BTreeMap<String, u64>, stored: &[String]) -> KeyAudit {
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for key in stored {
        *counts.entry(key).or_default() += 1;
    }
    let stored_keys: BTreeSet<&str> = counts.keys().copied().collect();
    KeyAudit {
        expected: expected.len() as u64,
        stored: stored.len() as u64,
        missing: expected.keys().filter(|k| !stored_keys.contains(k.as_str())).count() as u64,
        extra: stored_keys.iter().filter(|k| !expected.contains_key(**k)).count() as u64,
        doubled: counts.values().map(|n| n.saturating_sub(1)).sum(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(id: &str, user: &str, limit_dollars: u32, threshold: Option<u32>) -> Budget {
        Budget { id: id.into(), user: user.into(), category: "fuel".into(), limit_dollars, threshold, month: "2026-12".into() }
    }

    fn fuel(user: &str, cents: u64) -> Expense {
        (user.into(), "fuel", cents)
    }

    #[test]
    fn a_threshold_is_reached_at_exactly_its_share_of_the_limit() {
        let mut book = BudgetBook::new(vec![budget("b1", "u1", 100, None)]);
        book.committed(&[fuel("u1", 7_999)], 1);
        assert!(book.expected().is_empty(), "79.99 of 100 is under 80 %");
        book.committed(&[fuel("u1", 1)], 2);
        assert_eq!(book.expected().iter().collect::<Vec<_>>(), [(&"budget:b1:2026-12:80".to_string(), &2)]);
        book.committed(&[fuel("u1", 2_000)], 3);
        assert_eq!(book.expected().get("budget:b1:2026-12:100"), Some(&3), "exactly the limit reaches 100 %");
        assert_eq!(book.expected().get("budget:b1:2026-12:80"), Some(&2), "the first insert that reached it keeps its stamp");
    }

    #[test]
    fn one_insert_past_both_thresholds_expects_both_rows() {
        let mut book = BudgetBook::new(vec![budget("b1", "u1", 200, Some(90))]);
        book.committed(&[fuel("u1", 10_000), fuel("u1", 15_000)], 5);
        let keys: Vec<&String> = book.expected().keys().collect();
        assert_eq!(keys, ["budget:b1:2026-12:100", "budget:b1:2026-12:90"]);
    }

    #[test]
    fn a_threshold_outside_0_to_100_counts_only_as_the_limit() {
        let mut book = BudgetBook::new(vec![budget("b1", "u1", 100, Some(100)), budget("b2", "u2", 100, Some(0))]);
        book.committed(&[fuel("u1", 9_000), fuel("u2", 10_000)], 1);
        assert_eq!(book.expected().keys().collect::<Vec<_>>(), ["budget:b2:2026-12:100"]);
    }

    #[test]
    fn spend_in_other_categories_or_of_other_users_reaches_nothing() {
        let mut book = BudgetBook::new(vec![budget("b1", "u1", 100, None)]);
        book.committed(&[("u1".into(), "food", 50_000), fuel("u2", 50_000)], 1);
        assert!(book.expected().is_empty());
    }

    #[test]
    fn missing_extra_and_doubled_rows_are_counted_apart() {
        let expected: BTreeMap<String, u64> = [("k1", 1), ("k2", 1), ("k3", 1)].into_iter().map(|(k, s)| (k.to_string(), s)).collect();
        let stored: Vec<String> = ["k1", "k2", "k2", "k9"].into_iter().map(String::from).collect();
        assert_eq!(compare_keys(&expected, &stored), KeyAudit { expected: 3, stored: 4, missing: 1, extra: 1, doubled: 1 });
        let exact: Vec<String> = expected.keys().cloned().collect();
        assert_eq!(compare_keys(&expected, &exact), KeyAudit { expected: 3, stored: 3, ..KeyAudit::default() });
    }

    #[test]
    fn a_bulk_insert_has_about_the_rows_asked_for_in_budget_categories_and_noise() {
        let budgets: Vec<Budget> = (0..40).map(|n| budget(&format!("b{n}"), &format!("u{n}"), 100 + n, None)).collect();
        let book = BudgetBook::new(budgets);
        let rows = book.bulk(3_000, &["other".to_string()], &mut SplitMix64::new(9));
        assert!((2_900..=3_000).contains(&rows.len()), "{}", rows.len());
        assert_eq!(rows.iter().filter(|(user, _, _)| user == "other").count(), 300);
        assert!(rows.iter().all(|(_, category, cents)| *cents > 0 && (*category == "fuel" || *category == UNBUDGETED)));
    }
}
