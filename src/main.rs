//! The pam-gateway binary: parse settings, start logging, run until SIGTERM or ctrl-c; with TLS
//! on, SIGHUP reloads the certificate files.

use clap::Parser;
use pam_gateway::observability::telemetry;
use pam_gateway::{Application, Settings, shutdown_signal};

#[tokio::main]
async fn main() {
    let settings = Settings::parse();
    telemetry::init_tracing(settings.log_format);
    let result = async {
        let app = Application::build(settings).await?;
        if let Some(tls) = app.tls() {
            pam_gateway::http::tls::reload_on_sighup(tls)?;
        }
        app.run_until_stopped(shutdown_signal()).await
    }
    .await;
    if let Err(error) = result {
        // One readable line: the chain of causes, no backtrace.
        eprintln!("pam-gateway: {error:#}");
        std::process::exit(1);
    }
}
