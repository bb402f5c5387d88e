//! The integration suite as one test binary (one link instead of thirty; nextest still runs every
//! test in its own process, so each sees its own Prometheus recorder and globals).

mod common;

mod auth;
mod browser_client_replay;
mod byte_budgets;
mod client_address;
mod context_answers;
mod context_freshness;
mod context_invalidation;
mod context_store;
mod conversation_storage;
mod csrf_settings;
mod edge_http;
mod edge_limits;
mod health_and_dev;
mod hostile_edge;
mod jwks_outage;
mod keepalive;
mod legacy_protocol;
mod limits;
mod llm_fallback;
mod llm_providers;
mod llm_response_cache;
mod llm_streaming;
mod monitoring;
mod nothing_lost;
mod notification_store;
mod postgres_backend;
mod postgres_outage;
mod protocol_docs;
mod push_and_timers;
mod redis_cache;
mod rest_bad_input;
mod rest_chat;
mod rfc6455;
mod scale_out;
mod schema_doctor;
mod settings_refusals;
mod shutdown;
mod soak;
mod supervision;
mod tls;
mod token_times;
mod v2_protocol;
mod v2_session;
