//! The audit: every chat's outcome as its client saw it, checked against the answer the model
//! gives (deterministic) and against what Postgres stored, then counted per fault met and per
//! dialect. Must-holds (exit 1 otherwise): 0 silent, 0 partial, 0 answered twice to a v2 client,
//! 0 stored twice for a v2 id, and every v2 chat answered (an error it did not re-send is a miss).
//! Legacy has no ids: a chat re-sent after a lost socket may be stored twice (expected, reported).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::time::Duration;

use pam_loadtest::summary::{Report, Rule};

use super::faults::{Fault, Window, met};
use super::model::answer;
use super::record::{ChatRecord, ClientStats, Kind, Outcome};

/// What Postgres holds for one marker: rows by role, the assistant texts.
#[derive(Debug, Default)]
pub(super) struct Stored {
    pub(super) users: u32,
    pub(super) answers: Vec<String>,
}

/// Reads the run's rows: by `client_msg_id` (v2 ids, `rest:` keys) or, without one, by the marker
/// in the text (legacy).
pub(super) async fn stored(database_url: &str, salt: &str) -> Result<HashMap<String, Stored>, String> {
    let pool = sqlx::PgPool::connect(database_url).await.map_err(|e| format!("postgres: {e}"))?;
    let pattern = format!("%cx{salt}-%");
    let rows: Vec<(String, String, Option<String>)> =
        sqlx::query_as("SELECT role, content, client_msg_id FROM pam_messages WHERE content LIKE $1 OR client_msg_id LIKE $1")
            .bind(&pattern)
            .fetch_all(&pool)
            .await
            .map_err(|e| format!("pam_messages: {e}"))?;
    let mut out: HashMap<String, Stored> = HashMap::new();
    let prefix = format!("cx{salt}-");
    for (role, content, id) in rows {
        let marker = match id.as_deref().map(|id| id.strip_prefix("rest:").unwrap_or(id)) {
            Some(id) if id.starts_with(&prefix) => id.to_string(),
            _ => match content.find(&prefix) {
                Some(at) => content[at..].split(|c: char| c.is_whitespace() || c == ':').next().unwrap_or_default().to_string(),
                None => continue,
            },
        };
        let entry = out.entry(marker).or_default();
        match role.as_str() {
            "user" => entry.users += 1,
            _ => entry.answers.push(content),
        }
    }
    Ok(out)
}

/// One row of a table: a fault (or calm) or a dialect.
#[derive(Debug, Default, Clone)]
struct Tally {
    chats: u64,
    answered_first: u64,
    answered_after_resend: u64,
    errored: u64,
    silent: u64,
    partial: u64,
    twice_v2: u64,
    stored_twice_v2: u64,
    stored_twice_rest: u64,
    stored_twice_legacy: u64,
    not_stored: u64,
    retryable_errors: u64,
    v2_errored: u64,
}

impl Tally {
    fn line(&self, label: &str) -> String {
        format!(
            "| {label} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            self.chats,
            self.answered_first,
            self.answered_after_resend,
            self.errored,
            self.silent,
            self.partial,
            self.twice_v2,
            self.stored_twice_v2,
            self.stored_twice_legacy,
            self.retryable_errors
        )
    }
}

const HEADER: &str = "| | chats | answered | answered after re-send | errored | silent | partial | answered twice (v2) | stored twice (v2 id) | stored twice (legacy, expected) | retryable errors |\n|---|---|---|---|---|---|---|---|---|---|---|";

/// Everything the run gathered.
pub(super) struct Figures {
    pub(super) title: String,
    pub(super) records: Vec<ChatRecord>,
    pub(super) stats: BTreeMap<Kind, ClientStats>,
    pub(super) windows: Vec<Window>,
    pub(super) stored: HashMap<String, Stored>,
    pub(super) tail: Duration,
    pub(super) fault_error: Option<String>,
}

/// The tables (printed) and the summary with its must-holds.
pub(super) fn build(f: Figures, elapsed: Duration) -> Report {
    let mut by_fault: BTreeMap<Option<Fault>, Tally> = BTreeMap::new();
    let mut by_kind: BTreeMap<Kind, Tally> = BTreeMap::new();
    let mut examples = Vec::new();
    let empty = Stored::default();
    for r in &f.records {
        let expected = answer(&r.marker);
        let stored = f.stored.get(&r.marker).unwrap_or(&empty);
        let answered = r.outcome == Outcome::Answered;
        let partial = (answered && (r.text.as_deref() != Some(expected.as_str()) || !r.deltas_ok))
            || stored.answers.iter().any(|text| text.trim() != expected);
        let twice = r.kind == Kind::V2 && r.answers > 1;
        let stored_twice = stored.users > 1 || stored.answers.len() > 1;
        let silent = matches!(r.outcome, Outcome::Silent(_)) || (r.kind == Kind::V2 && r.deadline_passed);
        let fault = met(&f.windows, r.sent, r.ended, f.tail);
        for t in [by_fault.entry(fault).or_default(), by_kind.entry(r.kind).or_default()] {
            t.chats += 1;
            match &r.outcome {
                Outcome::Answered if r.resends == 0 => t.answered_first += 1,
                Outcome::Answered => t.answered_after_resend += 1,
                Outcome::Errored(_) => t.errored += 1,
                Outcome::Silent(_) => {}
            }
            t.silent += u64::from(silent);
            t.partial += u64::from(partial);
            t.twice_v2 += u64::from(twice);
            t.stored_twice_v2 += u64::from(stored_twice && r.kind == Kind::V2);
            t.stored_twice_rest += u64::from(stored_twice && r.kind == Kind::Rest);
            t.stored_twice_legacy += u64::from(stored_twice && r.kind == Kind::Legacy);
            t.not_stored += u64::from(answered && stored.answers.is_empty());
            t.retryable_errors += u64::from(r.retryable_errors);
            t.v2_errored += u64::from(r.kind == Kind::V2 && matches!(r.outcome, Outcome::Errored(_)));
        }
        let v2_errored = r.kind == Kind::V2 && matches!(r.outcome, Outcome::Errored(_));
        if (silent || partial || twice || (stored_twice && r.kind == Kind::V2) || v2_errored) && examples.len() < 8 {
            examples.push(format!(
                "{} {} fault={} sent={:.1}s ended={:.1}s {:?} resends={} answers={} deltas_ok={} stored users={} answers={:?} got={:?}",
                r.kind.name(),
                r.marker,
                fault.map_or("calm", Fault::name),
                r.sent.as_secs_f64(),
                r.ended.as_secs_f64(),
                r.outcome,
                r.resends,
                r.answers,
                r.deltas_ok,
                stored.users,
                stored.answers,
                r.text
            ));
        }
    }
    let mut table = String::new();
    let _ = writeln!(table, "\n  chats by the fault they met (a window runs from the fault to its recovery + {} s)\n", f.tail.as_secs());
    let _ = writeln!(table, "{HEADER}");
    let mut total = Tally::default();
    for (fault, t) in &by_fault {
        let _ = writeln!(table, "{}", t.line(fault.map_or("calm", |f| f.name())));
        add(&mut total, t);
    }
    let _ = writeln!(table, "{}", total.line("**all**"));
    let _ = writeln!(table, "\n  chats by dialect\n\n{HEADER}");
    for (kind, t) in &by_kind {
        let _ = writeln!(table, "{}", t.line(kind.name()));
    }
    let _ = writeln!(table, "\n  error codes and resume outcomes by the fault they came in (v2 and REST clients; legacy error frames)\n");
    let mut events: BTreeMap<Option<Fault>, BTreeMap<String, u64>> = BTreeMap::new();
    for (kind, s) in &f.stats {
        for (at, what) in &s.events {
            let what = format!("{} {what}", kind.name());
            *events.entry(met(&f.windows, *at, *at, f.tail)).or_default().entry(what).or_default() += 1;
        }
    }
    for (fault, what) in &events {
        let list: Vec<String> = what.iter().map(|(w, n)| format!("{w}×{n}")).collect();
        let _ = writeln!(table, "- {}: {}", fault.map_or("calm", |f| f.name()), list.join(", "));
    }
    println!("{table}");

    let mut report = Report::new(f.title, elapsed);
    for w in &f.windows {
        report.text(
            &format!("fault at {:>5.1}s", w.start.as_secs_f64()),
            format!("{} → {:.1}s: {}", w.fault.name(), w.end.as_secs_f64(), w.detail),
        );
    }
    for (kind, s) in &f.stats {
        let closes: Vec<String> = s.closes.iter().map(|(code, n)| format!("{code}×{n}")).collect();
        let errors: Vec<String> = s.errors.iter().map(|(code, n)| format!("{code}×{n}")).collect();
        report
            .text(&format!("{} connects (failed)", kind.name()), format!("{} ({})", s.connects, s.connect_failures))
            .text(&format!("{} socket endings", kind.name()), closes.join(" "))
            .text(&format!("{} errors", kind.name()), errors.join(" "))
            .count(&format!("{}_stray_answers", kind.name()), s.stray_answers);
        if *kind == Kind::V2 {
            let failed: Vec<String> = s.resume_failed.iter().map(|(reason, n)| format!("{reason}×{n}")).collect();
            report.count("v2_resumed", s.resumed).text("v2 resume_failed", failed.join(" "));
        }
        if let Some(problem) = &s.first_problem {
            report.text(&format!("{} first problem", kind.name()), problem.clone());
        }
    }
    report
        .count("chats", total.chats)
        .count("answered_first_try", total.answered_first)
        .count("answered_after_resend", total.answered_after_resend)
        .count("errored", total.errored)
        .count("answered_not_stored", total.not_stored)
        .count("rest_stored_twice", total.stored_twice_rest)
        .count("legacy_stored_twice_expected", total.stored_twice_legacy);
    if let Some(error) = &f.fault_error {
        report.text("fault schedule stopped", error.clone());
    }
    for (n, example) in examples.iter().enumerate() {
        report.text(&format!("example {}", n + 1), example.clone());
    }
    // A client only ever names positions it was sent: `ahead` is never right for it (after a
    // crash its position is past what the dead holder stored, which is `epoch_changed`).
    let ahead = f.stats.get(&Kind::V2).and_then(|s| s.resume_failed.get("ahead").copied()).unwrap_or(0);
    report
        .count("silent", total.silent)
        .count("partial", total.partial)
        .count("v2_answered_twice", total.twice_v2)
        .count("v2_stored_twice", total.stored_twice_v2)
        .count("v2_errored", total.v2_errored)
        .count("v2_resume_failed_ahead", ahead);
    for name in ["silent", "partial", "v2_answered_twice", "v2_stored_twice", "v2_errored", "v2_resume_failed_ahead"] {
        report.threshold(name, Rule::CountAtMost { max: 0 });
    }
    report
}

fn add(total: &mut Tally, t: &Tally) {
    total.chats += t.chats;
    total.answered_first += t.answered_first;
    total.answered_after_resend += t.answered_after_resend;
    total.errored += t.errored;
    total.silent += t.silent;
    total.partial += t.partial;
    total.twice_v2 += t.twice_v2;
    total.stored_twice_v2 += t.stored_twice_v2;
    total.stored_twice_rest += t.stored_twice_rest;
    total.stored_twice_legacy += t.stored_twice_legacy;
    total.not_stored += t.not_stored;
    total.retryable_errors += t.retryable_errors;
    total.v2_errored += t.v2_errored;
}
