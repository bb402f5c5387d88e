//! pam-loadtest: load scenarios against a running pam-gateway. So far `idle`: N authenticated
//! idle sockets that answer keepalive pings, reporting the server's RSS growth per connection
//! (read from /proc/<pid>/status).
//!
//! Usage: `pam-loadtest idle --url ws://127.0.0.1:8080 --pid <gateway pid> --secret <SUPABASE_JWT_SECRET> [--connections 1000] [--hold-secs 5]`

mod idle;
mod token;

use std::collections::HashMap;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(scenario) = args.first().cloned() else {
        eprintln!("usage: pam-loadtest idle --url ws://HOST:PORT --pid PID --secret SECRET [--connections N] [--hold-secs S]");
        return ExitCode::from(2);
    };
    let options = match parse_options(&args[1..]) {
        Ok(options) => options,
        Err(error) => {
            eprintln!("pam-loadtest: {error}");
            return ExitCode::from(2);
        }
    };
    let result = match scenario.as_str() {
        "idle" => idle::run(&options).await,
        other => Err(format!("unknown scenario '{other}' (known: idle)")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("pam-loadtest: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `--key value` pairs.
fn parse_options(args: &[String]) -> Result<HashMap<String, String>, String> {
    let mut options = HashMap::new();
    let mut iter = args.iter();
    while let Some(key) = iter.next() {
        let name = key.strip_prefix("--").ok_or_else(|| format!("expected --option, got '{key}'"))?;
        let value = iter.next().ok_or_else(|| format!("--{name} needs a value"))?;
        options.insert(name.to_string(), value.clone());
    }
    Ok(options)
}
