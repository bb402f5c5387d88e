//! docs/configuration.md, generated from clap's own model of [`Settings`]: every argument's env
//! name, flag, default and help text (its `///` doc comment), one table per `help_heading` in the
//! order of [`heading::ALL`]. The tests below fail when a setting lacks a description or a heading,
//! and when the committed file is not what [`markdown`] renders; `PAM_UPDATE_DOCS=1` (what
//! `scripts/check-config-docs.sh --write` sets) rewrites it instead.

use std::fmt::Write as _;

use clap::{Arg, CommandFactory};

use super::{Settings, heading};

/// The generated document, relative to the repository root.
pub const PATH: &str = "docs/configuration.md";

/// Where the rows of a setting without a known heading go (the tests refuse such a setting).
const OTHER: &str = "Other";

const INTRO: &str = "\
# Configuration

<!-- Generated from the doc comments of `Settings` (src/settings/mod.rs) by
`settings::docs::markdown`. Do not edit by hand: change the doc comments, then run
`bash scripts/check-config-docs.sh --write`. -->

Every setting is an environment variable and a command-line flag of the same meaning: the flag is
the field's name with dashes (`PAM_MAX_CONNECTIONS` → `--max-connections`, `DATABASE_URL` →
`--database-url`), and a flag wins over the variable. `cargo run --release -- --help` prints the
same list. The log level is `RUST_LOG` (env only, default `info`, e.g.
`RUST_LOG=pam_gateway=debug,info`).

Settings are checked together at startup. A value that cannot work (a limit or TTL of 0, an empty
`SUPABASE_JWT_SECRET`, a `SUPABASE_URL` or OTLP endpoint that is not an http(s) URL, a first-token deadline longer
than `PAM_LLM_TIMEOUT_MS`, `PAM_PONG_TIMEOUT_MS` not above `PAM_PING_INTERVAL_MS`, a malformed CIDR,
only one of `PAM_TLS_CERT`/`PAM_TLS_KEY`, dev auth or the conformance echo on a non-loopback bind, a
non-loopback bind without JWT settings) stops the start with one line that names the setting, and
a non-zero exit. After the migrations (or instead of them, with `PAM_MIGRATE=false`) the schema
doctor checks every column the gateway's queries use and refuses to start with one line per
problem, e.g. `- profiles.id is bigint, expected uuid (used by the profile context …)`. A Redis
that does not answer at startup does not stop the start: that is logged once at error level, and
`/api/v1/pam/health` reports `degraded` with cache status `unreachable` until Redis answers.

A default of \"unset\" means the feature the setting enables is off, or the meaning says what
happens instead. Secrets (`SUPABASE_JWT_SECRET`, `PAM_CSRF_SECRET`, `PAM_ADMIN_TOKEN`, the API
keys) are never logged, and `--help` does not print their values.
";

/// docs/configuration.md as the settings describe themselves.
pub fn markdown() -> String {
    let command = Settings::command();
    let settings: Vec<&Arg> = command.get_arguments().filter(|arg| arg.get_env().is_some()).collect();
    let mut out = String::from(INTRO);
    let known = |arg: &&&Arg| arg.get_help_heading().is_some_and(|h| heading::ALL.contains(&h));
    let mut sections: Vec<(&str, Vec<&Arg>)> = heading::ALL
        .iter()
        .map(|section| (*section, settings.iter().copied().filter(|arg| arg.get_help_heading() == Some(section)).collect()))
        .collect();
    sections.push((OTHER, settings.iter().filter(|arg| !known(arg)).copied().collect()));
    for (section, rows) in sections.into_iter().filter(|(_, rows)| !rows.is_empty()) {
        let _ = write!(out, "\n## {section}\n\n| env | flag | default | meaning |\n|---|---|---|---|\n");
        for arg in rows {
            let flag = arg.get_long().unwrap_or_default();
            let _ = writeln!(out, "| `{}` | `--{flag}` | {} | {} |", env(arg), default(arg), cell(&help(arg)));
        }
    }
    out
}

fn env(arg: &Arg) -> String {
    arg.get_env().map(|env| env.to_string_lossy().into_owned()).unwrap_or_default()
}

/// The default as clap knows it, or "unset".
fn default(arg: &Arg) -> String {
    let values: Vec<String> = arg.get_default_values().iter().map(|value| format!("`{}`", value.to_string_lossy())).collect();
    if values.is_empty() { "unset".into() } else { values.join(", ") }
}

/// The whole help text (the doc comment), on one line.
fn help(arg: &Arg) -> String {
    let text = arg.get_long_help().or(arg.get_help()).map(ToString::to_string).unwrap_or_default();
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Text that cannot break out of its table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn committed() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(PATH)
    }

    #[test]
    fn every_setting_has_an_env_name_a_description_and_a_known_heading() {
        let command = Settings::command();
        let lacking: Vec<String> = command
            .get_arguments()
            .filter(|arg| arg.get_env().is_none() || help(arg).is_empty() || !heading::ALL.contains(&arg.get_help_heading().unwrap_or("")))
            .map(|arg| arg.get_id().to_string())
            .collect();
        assert!(lacking.is_empty(), "settings without an env name, a `///` doc comment or a `help_heading` of heading::ALL: {lacking:?}");
    }

    #[test]
    fn every_env_name_is_listed_once() {
        let text = markdown();
        for arg in Settings::command().get_arguments() {
            let row = format!("| `{}` |", env(arg));
            assert_eq!(text.matches(&row).count(), 1, "{row}");
        }
    }

    #[test]
    fn docs_configuration_md_is_what_the_settings_generate() {
        let expected = markdown();
        if std::env::var("PAM_UPDATE_DOCS").is_ok_and(|v| v == "1") {
            std::fs::write(committed(), &expected).unwrap_or_else(|e| panic!("{PATH}: {e}"));
            return;
        }
        let found = std::fs::read_to_string(committed()).unwrap_or_default();
        assert!(
            found == expected,
            "{PATH} is not what the Settings doc comments generate; regenerate it: bash scripts/check-config-docs.sh --write \
             (or PAM_UPDATE_DOCS=1 cargo test -p pam-gateway --lib settings::docs)"
        );
    }
}
