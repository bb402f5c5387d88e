//! The pam-gateway binary: parse settings, start logging, run until SIGTERM or ctrl-c; with TLS
//! on, SIGHUP reloads the certificate files. A start that cannot work ends here: one line on
//! stderr (`pam-gateway: …`, naming the setting, its value with secrets redacted and the next
//! step) and exit code 1 (2 for a value that does not parse, printed by `Settings::load`).

use pam_gateway::observability::telemetry;
use pam_gateway::{Application, Settings, shutdown_signal};

#[tokio::main]
async fn main() {
    let settings = Settings::load();
    let traces = telemetry::init_tracing_and_traces(settings.log_format, &settings.traces);
    let result = async {
        let app = Application::build(settings).await?;
        if let Some(tls) = app.tls() {
            pam_gateway::http::tls::reload_on_sighup(tls)?;
        }
        app.run_until_stopped(shutdown_signal()).await
    }
    .await;
    if let Some(traces) = traces {
        traces.shutdown().await;
    }
    if let Err(error) = result {
        eprintln!("pam-gateway: {}", one_line(&error));
        std::process::exit(1);
    }
}

/// The chain of causes on one line, no backtrace (only the schema doctor's list of problems spans
/// lines); a cause already worded by the one above it (a driver error whose `Display` repeats its
/// source) is said once.
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}
