//! The whole-settings checks `Settings::validate` runs first: values that cannot work alone
//! (zero limits, a blank secret, a URL that is not one) or together (a first-token deadline longer
//! than the whole answer's). Each refusal is one line that starts with the setting's env name, so
//! an operator sees at once what to fix; the process then exits non-zero (main.rs).

use super::{Settings, SettingsError};
use crate::http::client_ip::TrustedProxies;

/// The first setting that cannot work, as a one-line error naming it.
pub(super) fn check(settings: &Settings) -> Result<(), SettingsError> {
    let refuse = |message: String| Err(SettingsError::Invalid(message));
    let at_least_one: [(&str, u64); 8] = [
        ("PAM_MAX_CONNECTIONS", settings.max_connections as u64),
        ("PAM_MAX_CONNECTIONS_PER_USER", settings.max_connections_per_user as u64),
        ("PAM_RATE_LIMIT_PER_MINUTE", u64::from(settings.rate_limit_per_minute)),
        ("PAM_AUTH_TIMEOUT_MS", settings.auth_timeout_ms),
        ("PAM_PROFILE_TTL_S", settings.profile_ttl_s),
        ("PAM_FINANCIAL_TTL_S", settings.financial_ttl_s),
        ("PAM_SOCIAL_TTL_S", settings.social_ttl_s),
        ("PAM_MAX_CONTEXT_BYTES", settings.max_context_bytes as u64),
    ];
    if let Some((name, _)) = at_least_one.iter().find(|(_, value)| *value == 0) {
        return refuse(format!("{name} must be at least 1 (got 0)"));
    }
    if settings.llm_first_token_timeout_ms > settings.llm_timeout_ms {
        return refuse(format!(
            "PAM_LLM_FIRST_TOKEN_TIMEOUT_MS ({}) must not be longer than PAM_LLM_TIMEOUT_MS ({}), the deadline of the whole answer",
            settings.llm_first_token_timeout_ms, settings.llm_timeout_ms
        ));
    }
    if settings.max_frame_bytes < settings.max_message_chars {
        return refuse(format!(
            "PAM_MAX_FRAME_BYTES ({}) is smaller than PAM_MAX_MESSAGE_CHARS ({}): a message at the limit could never arrive",
            settings.max_frame_bytes, settings.max_message_chars
        ));
    }
    if settings.supabase_jwt_secret.as_ref().is_some_and(|s| s.expose().trim().is_empty()) {
        return refuse(
            "SUPABASE_JWT_SECRET is set but empty: unset it or set the project's JWT secret (empty would silently turn dev auth on)".into(),
        );
    }
    if settings.jwt_audience.trim().is_empty() {
        return refuse("PAM_JWT_AUDIENCE is empty: no token could pass (Supabase's is `authenticated`)".into());
    }
    for (name, value) in [("SUPABASE_URL", &settings.supabase_url), ("PAM_JWKS_URL", &settings.jwks_url)] {
        if let Some(value) = value {
            http_url(value).map_err(|why| SettingsError::Invalid(format!("{name} is not an http(s) URL: {why}")))?;
        }
    }
    // A trace endpoint that cannot work is refused like any URL setting (the other trace
    // settings, headers and sampler, only turn traces off with one line: see observability).
    let traces = &settings.traces;
    for (name, value) in [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &traces.otel_exporter_otlp_endpoint),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &traces.otel_exporter_otlp_traces_endpoint),
    ] {
        if let Some(value) = value.as_deref().filter(|v| !v.trim().is_empty()) {
            http_url(value).map_err(|why| SettingsError::Invalid(format!("{name} is not an http(s) URL: {why}")))?;
        }
    }
    TrustedProxies::parse(settings.trusted_proxies.as_deref()).map_err(|e| SettingsError::Invalid(e.to_string()))?;
    if settings.node_ttl_ms < MIN_NODE_TTL_MS {
        return refuse(format!("PAM_NODE_TTL_MS must be at least {MIN_NODE_TTL_MS} (got {})", settings.node_ttl_ms));
    }
    if let Some(id) = settings.node_id.as_deref().map(str::trim).filter(|id| !id.is_empty()) {
        if id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
            return refuse("PAM_NODE_ID must be 1-64 characters of A-Z, a-z, 0-9, '.', '_' and '-' (it names Redis keys)".into());
        }
    }
    Ok(())
}

/// The shortest `PAM_NODE_TTL_MS`: heartbeats every third of it must still fit a Redis round trip.
const MIN_NODE_TTL_MS: u64 = 300;

/// An absolute http(s) URL with a host (the reason when not; never echoes the value).
fn http_url(value: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(value.trim()).map_err(|e| e.to_string())?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("scheme {:?} is not http or https", url.scheme()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("it has no host".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    type Adjust = Box<dyn FnOnce(&mut Settings)>;

    fn refusal(adjust: impl FnOnce(&mut Settings)) -> String {
        let mut settings = Settings::defaults();
        adjust(&mut settings);
        let error = settings.validate().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(!error.contains('\n'), "one line: {error}");
        error
    }

    #[test]
    fn each_unworkable_setting_is_refused_with_one_line_starting_with_its_name() {
        let cases: [(&str, Adjust); 9] = [
            ("PAM_MAX_CONNECTIONS ", Box::new(|s| s.max_connections = 0)),
            ("PAM_MAX_CONNECTIONS_PER_USER ", Box::new(|s| s.max_connections_per_user = 0)),
            ("PAM_RATE_LIMIT_PER_MINUTE ", Box::new(|s| s.rate_limit_per_minute = 0)),
            ("PAM_SOCIAL_TTL_S ", Box::new(|s| s.social_ttl_s = 0)),
            ("PAM_LLM_FIRST_TOKEN_TIMEOUT_MS ", Box::new(|s| (s.llm_first_token_timeout_ms, s.llm_timeout_ms) = (20_000, 10_000))),
            ("PAM_MAX_FRAME_BYTES ", Box::new(|s| (s.max_frame_bytes, s.max_message_chars) = (1_000, 2_000))),
            ("SUPABASE_JWT_SECRET ", Box::new(|s| s.supabase_jwt_secret = Some("".into()))),
            ("SUPABASE_URL ", Box::new(|s| s.supabase_url = Some("abc.supabase.co".into()))),
            ("PAM_TRUSTED_PROXIES:", Box::new(|s| s.trusted_proxies = Some("10.0.0.0/33".into()))),
        ];
        for (name, adjust) in cases {
            let error = refusal(adjust);
            assert!(error.starts_with(name), "expected a refusal naming {name}: {error:?}");
        }
    }

    #[test]
    fn urls_need_an_http_scheme_and_a_host() {
        assert!(http_url("https://abc.supabase.co").is_ok());
        assert!(http_url("http://127.0.0.1:9999/jwks.json").is_ok());
        assert!(http_url("ftp://abc.supabase.co").is_err());
        assert!(http_url("not a url").is_err());
        assert_eq!(
            refusal(|s| s.jwks_url = Some("file:///etc/passwd".into())).split(':').next(),
            Some("PAM_JWKS_URL is not an http(s) URL")
        );
    }

    #[test]
    fn the_defaults_pass() {
        assert_eq!(refusal(|_| {}), "");
    }
}
