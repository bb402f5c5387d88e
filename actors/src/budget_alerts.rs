//! Budget alerts: when a category's month-to-date spend reaches its budget's `alert_threshold`
//! (%, default 80) or 100 %, the user gets one `proactive_alert` per (budget, month, threshold).
//!
//! The rule is here, free of storage ([`alerts_for`]); the `BudgetAlertStore` port evaluates a
//! user's budgets and stores the alerts in `pam_notifications` in one transaction, deduplicated
//! by `dedupe_key = budget:{budget_id}:{yyyy-mm}:{threshold}` (a unique index), so any number of
//! nodes evaluating the same change store — and publish — each alert exactly once.
//! A leaf: imports only the protocol's alert frame.

use pam_protocol::{AlertContent, AlertPriority};

/// `alert_threshold` when a budget has none (%).
pub(crate) const DEFAULT_THRESHOLD: f64 = 80.0;
/// How long a stored budget alert waits for an offline user's next connect.
pub const ALERT_TTL: chrono::Duration = chrono::Duration::hours(24);

/// One active budget of a user with its category's month-to-date spend.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetSpend {
    /// The budget's id (uuid text).
    pub budget_id: String,
    /// The budget's expense category.
    pub category: String,
    /// `monthly_limit` when > 0, else `budgeted_amount` (in the user's currency).
    pub limit: f64,
    /// `alert_threshold` in % (`None` = [`DEFAULT_THRESHOLD`]).
    pub threshold: Option<f64>,
    /// Month-to-date spend in the category.
    pub spent: f64,
    /// The month the spend is for, `yyyy-mm` (the database's current date).
    pub month: String,
}

/// An alert a budget has earned this month (stored unless its dedupe key is already taken).
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetAlert {
    /// `budget:{budget_id}:{yyyy-mm}:{threshold}`.
    pub dedupe_key: String,
    /// The `proactive_alert` content.
    pub content: AlertContent,
    /// Stored already dismissed, never sent: a higher threshold was reached by the same change
    /// (one expense from 50 % to 110 % says "over budget" once, not twice).
    pub superseded: bool,
}

/// Rounds to cents, so float sums like 319.99999999 never miss a 320.00 threshold.
fn cents(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// `80` for 80.00, `82.5` for 82.50: the threshold as it appears in the dedupe key.
pub(crate) fn threshold_text(threshold: f64) -> String {
    let text = format!("{:.2}", cents(threshold));
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The alerts `budget`'s spend has reached this month, lowest threshold first; empty when the
/// budget has no positive limit. A threshold outside (0, 100) counts only as the 100 % one.
pub fn alerts_for(budget: &BudgetSpend) -> Vec<BudgetAlert> {
    // Also refuses a NaN limit.
    if !budget.limit.is_finite() || budget.limit <= 0.0 || !budget.spent.is_finite() {
        return Vec::new();
    }
    let (limit, spent) = (cents(budget.limit), cents(budget.spent));
    let configured = budget.threshold.filter(|t| t.is_finite()).unwrap_or(DEFAULT_THRESHOLD);
    let mut thresholds = Vec::with_capacity(2);
    if configured > 0.0 && configured < 100.0 {
        thresholds.push(configured);
    }
    thresholds.push(100.0);
    let reached: Vec<f64> = thresholds.into_iter().filter(|t| spent >= cents(limit * t / 100.0)).collect();
    let highest = reached.last().copied();
    reached
        .into_iter()
        .map(|threshold| BudgetAlert {
            dedupe_key: format!("budget:{}:{}:{}", budget.budget_id, budget.month, threshold_text(threshold)),
            content: content(budget, spent, limit, threshold),
            superseded: Some(threshold) != highest,
        })
        .collect()
}

fn content(budget: &BudgetSpend, spent: f64, limit: f64, threshold: f64) -> AlertContent {
    let category = budget.category.as_str();
    let percent = (spent / limit * 100.0).floor();
    let message = if threshold >= 100.0 && spent > limit {
        format!(
            "You've gone over your {category} budget: ${spent:.2} spent of ${limit:.2} this month ({percent:.0}%). Want me to look for savings?"
        )
    } else if threshold >= 100.0 {
        // Exactly at the limit: reached, not over.
        format!("You've reached your {category} budget: ${spent:.2} spent of ${limit:.2} this month (100%). Want me to look for savings?")
    } else {
        format!(
            "You've spent ${spent:.2} of your ${limit:.2} {category} budget this month ({percent:.0}%, past your {}% alert).",
            threshold_text(threshold)
        )
    };
    AlertContent {
        kind: "proactive_suggestion".into(),
        category: "financial_guidance".into(),
        alert_type: "budget_alert".into(),
        message,
        priority: if threshold >= 100.0 { AlertPriority::High } else { AlertPriority::Normal },
        actions: vec!["analyze_expenses".into()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(spent: f64, threshold: Option<f64>) -> BudgetSpend {
        BudgetSpend { budget_id: "b1".into(), category: "fuel".into(), limit: 400.0, threshold, spent, month: "2026-11".into() }
    }

    fn keys(alerts: &[BudgetAlert]) -> Vec<(&str, bool)> {
        alerts.iter().map(|a| (a.dedupe_key.as_str(), a.superseded)).collect()
    }

    #[test]
    fn under_the_threshold_nothing_is_earned() {
        assert!(alerts_for(&budget(319.99, None)).is_empty());
    }

    #[test]
    fn at_the_default_threshold_one_normal_alert_names_category_spend_and_limit() {
        let alerts = alerts_for(&budget(320.0, None));
        assert_eq!(keys(&alerts), [("budget:b1:2026-11:80", false)]);
        let content = &alerts[0].content;
        assert_eq!((content.category.as_str(), content.alert_type.as_str()), ("financial_guidance", "budget_alert"));
        assert_eq!(content.priority, AlertPriority::Normal);
        assert_eq!(content.actions, ["analyze_expenses"]);
        assert!(content.message.contains("fuel") && content.message.contains("$320.00") && content.message.contains("$400.00"));
    }

    #[test]
    fn past_the_limit_the_100_alert_is_high_and_supersedes_the_threshold_one() {
        let alerts = alerts_for(&budget(412.5, Some(90.0)));
        assert_eq!(keys(&alerts), [("budget:b1:2026-11:90", true), ("budget:b1:2026-11:100", false)]);
        assert_eq!(alerts[1].content.priority, AlertPriority::High);
        assert!(alerts[1].content.message.contains("$412.50"));
    }

    #[test]
    fn exactly_at_the_limit_the_alert_says_reached_and_only_past_it_gone_over() {
        let at = &alerts_for(&budget(400.0, None))[1].content.message;
        assert!(at.contains("reached your fuel budget") && at.contains("(100%)") && !at.contains("gone over"), "{at}");
        let past = &alerts_for(&budget(400.01, None))[1].content.message;
        assert!(past.contains("gone over your fuel budget"), "{past}");
    }

    #[test]
    fn float_sums_round_to_cents_and_odd_thresholds_keep_their_decimals() {
        assert_eq!(keys(&alerts_for(&budget(0.1 + 0.2 + 329.7, Some(82.5)))), [("budget:b1:2026-11:82.5", false)]);
        assert_eq!(threshold_text(80.0), "80");
        assert_eq!(threshold_text(82.5), "82.5");
    }

    #[test]
    fn a_threshold_of_100_or_more_or_none_positive_means_only_the_limit_alert() {
        assert_eq!(keys(&alerts_for(&budget(390.0, Some(100.0)))), Vec::<(&str, bool)>::new());
        assert_eq!(keys(&alerts_for(&budget(400.0, Some(120.0)))), [("budget:b1:2026-11:100", false)]);
        assert_eq!(keys(&alerts_for(&budget(400.0, Some(0.0)))), [("budget:b1:2026-11:100", false)]);
    }

    #[test]
    fn a_budget_without_a_positive_limit_earns_nothing() {
        let mut zero = budget(50.0, None);
        zero.limit = 0.0;
        assert!(alerts_for(&zero).is_empty());
    }
}
