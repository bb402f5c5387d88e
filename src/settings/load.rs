//! Reading `Settings` from the environment and the command line (main.rs): a value that does not
//! parse is refused in one line naming the env var that was set (or the flag, when the flag was
//! given), its value (hidden for secrets) and what would work. Also the `PAM_LISTEN` parser, which
//! accepts host names (`localhost:8080`) and resolves them once, at start, and `PORT`, which
//! only stands in for an unset `PAM_LISTEN`.

use std::error::Error as _;
use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches};

use super::Settings;
use super::secret::redact_url;

/// Exit code of a setting that does not parse (clap's code for a usage error).
const PARSE_EXIT_CODE: i32 = 2;

impl Settings {
    /// The settings from the environment and the command line. `--help`/`--version` print and
    /// exit 0; a value that does not parse prints one line (`pam-gateway: PAM_LISTEN=…: …`) and
    /// exits 2.
    pub fn load() -> Settings {
        Self::load_from(std::env::args_os())
    }

    fn load_from(args: impl IntoIterator<Item = OsString>) -> Settings {
        let args: Vec<OsString> = args.into_iter().collect();
        match Settings::try_load_from(&args) {
            Ok(settings) => settings,
            Err(error) => match refusal(&error, &args) {
                Some(line) => {
                    eprintln!("pam-gateway: {line}");
                    std::process::exit(PARSE_EXIT_CODE);
                }
                None => error.exit(),
            },
        }
    }
}

impl Settings {
    /// `args` and the environment parsed; then `PORT` binds every interface when neither
    /// `PAM_LISTEN` nor `--listen` was given (a platform's port must be reachable from its router).
    pub(super) fn try_load_from(args: &[OsString]) -> Result<Settings, clap::Error> {
        let mut matches = Settings::command().try_get_matches_from(args)?;
        let listen_defaulted = matches.value_source("listen") == Some(ValueSource::DefaultValue);
        let mut settings = Settings::from_arg_matches_mut(&mut matches)?;
        if let Some(port) = settings.port.filter(|_| listen_defaulted) {
            settings.listen = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
        }
        Ok(settings)
    }
}

/// A clap value error as one line: `NAME=value: why; what would work`. `None` for the errors
/// clap words well itself (help, version, unknown flags).
fn refusal(error: &clap::Error, args: &[OsString]) -> Option<String> {
    if !matches!(error.kind(), ErrorKind::ValueValidation | ErrorKind::InvalidValue) {
        return None;
    }
    let Some(ContextValue::String(shown_arg)) = error.get(ContextKind::InvalidArg) else { return None };
    let command = Settings::command();
    let arg =
        command.get_arguments().find(|a| a.get_long().is_some_and(|long| shown_arg.split(' ').next() == Some(&format!("--{long}"))))?;
    let long = format!("--{}", arg.get_long()?);
    let given_as_flag = args.iter().skip(1).filter_map(|a| a.to_str()).any(|a| a == long || a.starts_with(&format!("{long}=")));
    let name = match arg.get_env() {
        Some(env) if !given_as_flag => env.to_string_lossy().into_owned(),
        _ => long,
    };
    let value = match error.get(ContextKind::InvalidValue) {
        Some(ContextValue::String(value)) => value.clone(),
        _ => String::new(),
    };
    let shown = if arg.is_hide_env_values_set() { "***".to_string() } else { redact_url(&value) };
    let why = match (error.source(), error.get(ContextKind::ValidValue)) {
        (Some(source), _) => source.to_string(),
        (None, Some(ContextValue::Strings(valid))) => format!("expected one of {}", valid.join(", ")),
        _ => "not a valid value".into(),
    };
    let default = arg.get_default_values().first().map(|d| d.to_string_lossy().into_owned());
    let next = match default {
        Some(default) => format!("set a valid value or unset it (default {default}); pam-gateway --help describes it"),
        None => "set a valid value or unset it; pam-gateway --help describes it".into(),
    };
    Some(format!("{name}={shown}: {why}; {next}"))
}

/// `PAM_LISTEN`: an IP address and port (`127.0.0.1:8080`, `[::1]:8080`) or a host name and port
/// (`localhost:8080`), resolved here; an IPv4 address is preferred when the name has both.
pub(crate) fn listen_address(value: &str) -> Result<SocketAddr, String> {
    let value = value.trim();
    if let Ok(address) = value.parse::<SocketAddr>() {
        return Ok(address);
    }
    let expected = "expected host:port, e.g. 127.0.0.1:8080, localhost:8080 or 0.0.0.0:8080 (every interface)";
    let Some((host, port)) = value.rsplit_once(':') else { return Err(format!("no port: {expected}")) };
    let port: u16 = port.parse().map_err(|_| format!("the port {port:?} is not a number from 0 to 65535: {expected}"))?;
    if host.is_empty() || host.contains(['/', ' ', '[', ']']) {
        return Err(expected.into());
    }
    let addresses: Vec<SocketAddr> =
        (host, port).to_socket_addrs().map_err(|e| format!("the host name {host:?} does not resolve ({e}): {expected}"))?.collect();
    addresses
        .iter()
        .find(|a| a.is_ipv4())
        .or(addresses.first())
        .copied()
        .ok_or_else(|| format!("the host name {host:?} has no address: {expected}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_takes_addresses_and_host_names() {
        assert_eq!(listen_address("127.0.0.1:8080"), Ok("127.0.0.1:8080".parse().unwrap()));
        assert_eq!(listen_address("[::1]:0"), Ok("[::1]:0".parse().unwrap()));
        let local = listen_address("localhost:8080").unwrap();
        assert!(local.ip().is_loopback() && local.port() == 8080, "{local}");
        for bad in ["localhost", "localhost:99999", ":8080", "127.0.0.1:http"] {
            let error = listen_address(bad).unwrap_err();
            assert!(error.contains("expected host:port"), "{bad}: {error}");
        }
    }

    fn loaded(args: &[&str]) -> Settings {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        Settings::try_load_from(&args).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    #[test]
    fn port_listens_on_every_interface_unless_listen_is_given() {
        assert_eq!(loaded(&["pam-gateway", "--port", "10000"]).listen, "0.0.0.0:10000".parse().unwrap());
        let both = loaded(&["pam-gateway", "--port", "10000", "--listen", "127.0.0.1:9000"]);
        assert_eq!(both.listen, "127.0.0.1:9000".parse().unwrap(), "PAM_LISTEN wins");
        // Given explicitly, even the default value is a choice PORT does not override.
        let default_given = loaded(&["pam-gateway", "--port", "10000", "--listen", "127.0.0.1:8080"]);
        assert_eq!(default_given.listen, "127.0.0.1:8080".parse().unwrap());
    }

    fn refused(args: &[&str]) -> String {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        let error = Settings::try_load_from(&args).err().expect("refused");
        refusal(&error, &args).expect("a one-line refusal")
    }

    #[test]
    fn a_flag_that_does_not_parse_is_named_with_its_value_and_default() {
        let line = refused(&["pam-gateway", "--listen", "localhost"]);
        assert!(line.starts_with("--listen=localhost: no port: expected host:port"), "{line}");
        let line = refused(&["pam-gateway", "--max-connections=lots"]);
        assert!(line.starts_with("--max-connections=lots: invalid digit"), "{line}");
        assert!(line.contains("(default 50000)"), "{line}");
        let line = refused(&["pam-gateway", "--log-format", "xml"]);
        assert!(line.starts_with("--log-format=xml: expected one of pretty, json"), "{line}");
        assert!(!line.contains('\n'), "{line}");
    }
}
