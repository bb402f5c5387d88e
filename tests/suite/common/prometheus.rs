//! The deployment's alert rules (`deploy/prometheus/alerts.yml`) evaluated by `promtool` against
//! samples a test scraped from a real node: whether an alert fires on what the gateway exports,
//! not only on the hand-written series of `alerts.test.yml`.

use std::process::Command;

/// Whether alert `alert` fires one minute after a scrape every 15 s keeps returning `series`
/// (each `name{labels}` with its value). Fails the test when promtool is missing
/// (`scripts/test.sh` installs it, as Debian's `prometheus` package).
pub fn alert_fires(alert: &str, series: &[(String, f64)]) -> bool {
    if Command::new("promtool").arg("--version").output().is_err() {
        panic!(
            "promtool is not installed, so the deployed alert rules cannot be evaluated: run ./scripts/test.sh \
             (it installs it) or `apt-get install --no-install-recommends prometheus`"
        );
    }
    let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/prometheus/alerts.yml");
    let input: String = series.iter().map(|(name, value)| format!("      - series: '{name}'\n        values: '{value}x8'\n")).collect();
    let test = format!(
        "rule_files: ['{rules}']\nevaluation_interval: 15s\ntests:\n  - interval: 15s\n    input_series:\n{input}    promql_expr_test:\n      - expr: clamp_max(count(ALERTS{{alertname=\"{alert}\",alertstate=\"firing\"}}), 1)\n        eval_time: 1m\n        exp_samples:\n          - labels: '{{}}'\n            value: 1\n"
    );
    let path = std::env::temp_dir().join(format!("pam-promtool-{}.yml", uuid::Uuid::new_v4().simple()));
    std::fs::write(&path, &test).unwrap();
    let output = Command::new("promtool").args(["test", "rules"]).arg(&path).output().expect("promtool runs");
    let _ = std::fs::remove_file(&path);
    if !output.status.success() {
        eprintln!(
            "{alert} did not fire on {series:?}:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    output.status.success()
}
