//! Admission: who is let in at the door — per-user socket slots, the per-IP auth-failure
//! throttle, and the per-user chat rate limit (in process, or across nodes through the cluster
//! ports). Imports the ports and the connection's messages, never an actor.

mod auth_throttle;
mod rate_limit;
mod user_slots;

pub use auth_throttle::AuthFailureThrottle;
pub use rate_limit::{ChatRateLimit, Gcra};
pub(crate) use user_slots::UserSlot;
pub use user_slots::UserSlots;
