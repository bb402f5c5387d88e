//! Several gateway nodes in one test, sharing one Redis (each test its own `PAM_CACHE_PREFIX`, or
//! its own `redis-server` when it stops Redis) and each with its own SQLite file: what "N nodes
//! behave as one" promises, proved over real sockets and REST.

mod crash;
mod liveness;
mod push;
mod push_catch_up;
mod redis_outage;
mod redis_tls;
mod resume;
mod shared_limits;
mod timer_claims;
