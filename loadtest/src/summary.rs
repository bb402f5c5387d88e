//! The one place figures are computed and printed: latency trends (avg/min/med/max/p90/p95/p99,
//! interpolated like k6), counters with rates, success rates, and thresholds that decide the exit
//! code. Every scenario builds a `Report` from these and prints it in k6's summary shape.

use std::fmt::Write as _;
use std::time::Duration;

/// Latency samples in milliseconds.
#[derive(Debug, Clone, Default)]
pub struct Trend {
    samples: Vec<f64>,
    sorted: bool,
}

impl Trend {
    pub fn record(&mut self, elapsed: Duration) {
        self.record_ms(elapsed.as_secs_f64() * 1000.0);
    }

    pub fn record_ms(&mut self, ms: f64) {
        self.samples.push(ms);
        self.sorted = false;
    }

    pub fn merge(&mut self, other: Trend) {
        self.samples.extend(other.samples);
        self.sorted = false;
    }

    fn sort(&mut self) {
        if !self.sorted {
            self.samples.sort_by(f64::total_cmp);
            self.sorted = true;
        }
    }

    /// The `p`-th percentile (0..=100), linearly interpolated between the closest ranks (k6's
    /// method); `None` without samples.
    pub fn percentile(&mut self, p: f64) -> Option<f64> {
        self.sort();
        let n = self.samples.len();
        if n == 0 {
            return None;
        }
        let rank = (p.clamp(0.0, 100.0) / 100.0) * (n - 1) as f64;
        let (low, high) = (rank.floor() as usize, rank.ceil() as usize);
        let weight = rank - low as f64;
        Some(self.samples[low] + (self.samples[high] - self.samples[low]) * weight)
    }

    pub fn avg(&self) -> Option<f64> {
        (!self.samples.is_empty()).then(|| self.samples.iter().sum::<f64>() / self.samples.len() as f64)
    }

    /// How many samples are at or above `ms`.
    pub fn at_least(&self, ms: f64) -> usize {
        self.samples.iter().filter(|&&s| s >= ms).count()
    }

    /// `avg=… min=… med=… max=… p(90)=… p(95)=… p(99)=…`.
    fn describe(&mut self) -> String {
        if self.samples.is_empty() {
            return "no samples".into();
        }
        let avg = self.avg().unwrap_or(0.0);
        let mut parts = vec![format!("avg={}", fmt_ms(avg))];
        for (label, p) in [("min", 0.0), ("med", 50.0), ("max", 100.0), ("p(90)", 90.0), ("p(95)", 95.0), ("p(99)", 99.0)] {
            parts.push(format!("{label}={}", fmt_ms(self.percentile(p).unwrap_or(0.0))));
        }
        parts.join(" ")
    }
}

/// Milliseconds the way k6 prints durations: µs below 1 ms, s above 1 s.
pub fn fmt_ms(ms: f64) -> String {
    if ms < 1.0 {
        format!("{:.0}µs", ms * 1000.0)
    } else if ms < 1000.0 {
        format!("{ms:.2}ms")
    } else {
        format!("{:.2}s", ms / 1000.0)
    }
}

/// Passes and failures of one kind of check.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rate {
    pub passes: u64,
    pub fails: u64,
}

impl Rate {
    pub fn add(&mut self, passed: bool) {
        if passed { self.passes += 1 } else { self.fails += 1 }
    }

    /// Share of passes in 0..=1; an empty rate is 0 (nothing succeeded).
    pub fn ratio(&self) -> f64 {
        let total = self.passes + self.fails;
        if total == 0 { 0.0 } else { self.passes as f64 / total as f64 }
    }
}

/// What a threshold checks.
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    /// Percentile `p` of a trend is below `limit_ms`.
    PercentileBelow { p: f64, limit_ms: f64 },
    /// A rate's share of passes is at least `min` (0..=1).
    RateAtLeast { min: f64 },
    /// A count is at most `max`.
    CountAtMost { max: u64 },
}

/// One line of a report.
#[derive(Debug, Clone)]
enum Line {
    Trend(String, Trend),
    Count(String, u64),
    Rate(String, Rate),
    Text(String, String),
}

/// A threshold's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub description: String,
    pub passed: bool,
}

/// A scenario's summary: metrics in the order added, then thresholds.
#[derive(Debug, Clone)]
pub struct Report {
    title: String,
    elapsed: Duration,
    lines: Vec<Line>,
    verdicts: Vec<Verdict>,
}

impl Report {
    pub fn new(title: impl Into<String>, elapsed: Duration) -> Self {
        Self { title: title.into(), elapsed, lines: Vec::new(), verdicts: Vec::new() }
    }

    pub fn trend(&mut self, name: &str, trend: Trend) -> &mut Self {
        self.lines.push(Line::Trend(name.into(), trend));
        self
    }

    pub fn count(&mut self, name: &str, count: u64) -> &mut Self {
        self.lines.push(Line::Count(name.into(), count));
        self
    }

    pub fn rate(&mut self, name: &str, rate: Rate) -> &mut Self {
        self.lines.push(Line::Rate(name.into(), rate));
        self
    }

    pub fn text(&mut self, name: &str, value: impl Into<String>) -> &mut Self {
        self.lines.push(Line::Text(name.into(), value.into()));
        self
    }

    /// Checks `rule` against the metric called `name` (which must have been added).
    pub fn threshold(&mut self, name: &str, rule: Rule) -> &mut Self {
        let verdict = self.evaluate(name, &rule);
        self.verdicts.push(verdict);
        self
    }

    fn evaluate(&mut self, name: &str, rule: &Rule) -> Verdict {
        let line = self.lines.iter_mut().find(|l| matches!(l, Line::Trend(n, _) | Line::Count(n, _) | Line::Rate(n, _) if n == name));
        let (description, passed) = match (rule, line) {
            (Rule::PercentileBelow { p, limit_ms }, Some(Line::Trend(_, trend))) => {
                let value = trend.percentile(*p);
                let shown = value.map_or("no samples".into(), fmt_ms);
                (format!("{name} p({p})<{} (is {shown})", fmt_ms(*limit_ms)), value.is_some_and(|v| v < *limit_ms))
            }
            (Rule::RateAtLeast { min }, Some(Line::Rate(_, rate))) => {
                (format!("{name} rate>={:.1}% (is {:.2}%)", min * 100.0, rate.ratio() * 100.0), rate.ratio() >= *min)
            }
            (Rule::CountAtMost { max }, Some(Line::Count(_, count))) => (format!("{name} count<={max} (is {count})"), *count <= *max),
            _ => (format!("{name}: no metric of that name and kind for {rule:?}"), false),
        };
        Verdict { description, passed }
    }

    /// True when every threshold passed.
    pub fn passed(&self) -> bool {
        self.verdicts.iter().all(|v| v.passed)
    }

    #[cfg(test)]
    pub fn verdicts(&self) -> &[Verdict] {
        &self.verdicts
    }

    /// The k6-shaped text block.
    pub fn render(&mut self) -> String {
        let mut out = format!("\n  scenario: {} ({:.1} s)\n\n", self.title, self.elapsed.as_secs_f64());
        let seconds = self.elapsed.as_secs_f64().max(1e-9);
        for line in &mut self.lines {
            let (name, value) = match line {
                Line::Trend(name, trend) => (name.as_str(), trend.describe()),
                Line::Count(name, count) => (name.as_str(), format!("{count:<8} {:.2}/s", *count as f64 / seconds)),
                Line::Rate(name, rate) => (name.as_str(), format!("{:.2}% ✓ {} ✗ {}", rate.ratio() * 100.0, rate.passes, rate.fails)),
                Line::Text(name, text) => (name.as_str(), text.clone()),
            };
            let _ = writeln!(out, "     {name:.<32}: {value}");
        }
        if !self.verdicts.is_empty() {
            out.push_str("\n  thresholds\n");
            for verdict in &self.verdicts {
                let _ = writeln!(out, "   {} {}", if verdict.passed { "✓" } else { "✗" }, verdict.description);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trend(values: &[f64]) -> Trend {
        let mut t = Trend::default();
        values.iter().for_each(|&v| t.record_ms(v));
        t
    }

    #[test]
    fn percentiles_interpolate_between_ranks_like_k6() {
        let mut t = trend(&[40.0, 10.0, 30.0, 20.0]);
        assert_eq!(t.percentile(0.0), Some(10.0));
        assert_eq!(t.percentile(50.0), Some(25.0));
        assert_eq!(t.percentile(100.0), Some(40.0));
        assert!((t.percentile(95.0).unwrap() - 38.5).abs() < 1e-9);
    }

    #[test]
    fn an_empty_trend_has_no_percentile_and_fails_its_threshold() {
        let mut report = Report::new("t", Duration::from_secs(1));
        report.trend("chat_latency", Trend::default()).threshold("chat_latency", Rule::PercentileBelow { p: 95.0, limit_ms: 2000.0 });
        assert!(!report.passed());
        assert!(report.verdicts()[0].description.contains("no samples"));
    }

    #[test]
    fn a_slow_p95_fails_and_a_fast_one_passes() {
        let slow: Vec<f64> = (1..=100).map(|i| if i > 90 { 3000.0 } else { 100.0 }).collect();
        let mut report = Report::new("t", Duration::from_secs(1));
        report.trend("slow", trend(&slow)).trend("fast", trend(&[5.0; 20]));
        report.threshold("slow", Rule::PercentileBelow { p: 95.0, limit_ms: 2000.0 });
        report.threshold("fast", Rule::PercentileBelow { p: 95.0, limit_ms: 2000.0 });
        let outcomes: Vec<bool> = report.verdicts().iter().map(|v| v.passed).collect();
        assert_eq!(outcomes, vec![false, true]);
        assert!(!report.passed());
    }

    #[test]
    fn a_rate_at_the_limit_passes_and_below_it_fails() {
        let mut report = Report::new("t", Duration::from_secs(1));
        report.rate("at", Rate { passes: 95, fails: 5 }).rate("below", Rate { passes: 94, fails: 6 }).rate("empty", Rate::default());
        for name in ["at", "below", "empty"] {
            report.threshold(name, Rule::RateAtLeast { min: 0.95 });
        }
        let outcomes: Vec<bool> = report.verdicts().iter().map(|v| v.passed).collect();
        assert_eq!(outcomes, vec![true, false, false]);
    }

    #[test]
    fn a_count_over_its_maximum_fails() {
        let mut report = Report::new("t", Duration::from_secs(1));
        report.count("stalls", 0).count("failures", 3);
        report.threshold("stalls", Rule::CountAtMost { max: 0 }).threshold("failures", Rule::CountAtMost { max: 0 });
        assert_eq!(report.verdicts().iter().map(|v| v.passed).collect::<Vec<_>>(), vec![true, false]);
    }

    #[test]
    fn a_threshold_on_a_missing_metric_fails_instead_of_passing() {
        let mut report = Report::new("t", Duration::from_secs(1));
        report.count("ws_sessions", 5).threshold("ws_sessions", Rule::PercentileBelow { p: 95.0, limit_ms: 1.0 });
        assert!(!report.passed());
    }

    #[test]
    fn the_rendered_summary_names_every_metric_and_marks_failed_thresholds() {
        let mut report = Report::new("legacy-chat", Duration::from_secs(2));
        report.trend("chat_latency", trend(&[1.5, 2500.0])).count("ws_msgs_sent", 10).rate("checks", Rate { passes: 1, fails: 1 });
        report.threshold("checks", Rule::RateAtLeast { min: 0.95 });
        let text = report.render();
        assert!(text.contains("chat_latency") && text.contains("p(99)=2.48s"), "{text}");
        assert!(text.contains("ws_msgs_sent") && text.contains("5.00/s"), "{text}");
        assert!(text.contains("✗ checks rate>=95.0% (is 50.00%)"), "{text}");
    }

    #[test]
    fn durations_print_in_k6_units() {
        assert_eq!(fmt_ms(0.25), "250µs");
        assert_eq!(fmt_ms(12.345), "12.35ms");
        assert_eq!(fmt_ms(2500.0), "2.50s");
    }
}
