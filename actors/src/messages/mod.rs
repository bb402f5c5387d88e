//! Message types of the actors, each in a leaf module of its own (as ractor keeps
//! `actor/messages.rs`): whoever casts to an actor imports its messages, never the actor.

pub(crate) mod connection;
pub(crate) mod orchestrator;
