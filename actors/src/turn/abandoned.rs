//! Turns a dead node left open, recorded as abandoned (cause `crash`) by the node that ends them
//! for their clients. The process that accepted them is gone and counted nothing, so this record
//! is the only trace Prometheus gets of them; the database counts each once however many nodes
//! (or a later repeat of the chat) end the same turn. Builds on the pipeline's bounded store call.

use std::sync::Arc;
use std::time::Duration;

use pam_protocol::UserId;

use super::pipeline::bounded;
use crate::ports::{AbandonCause, AbandonedTurn, ConversationStore};

/// A write refused for a moment (storage blip) is tried again this often, this many times; after
/// that the turns are only logged (the count is an alert's input, not a conversation).
const RETRY_PAUSE: Duration = Duration::from_secs(2);
const TRIES: u32 = 5;

/// Records `turns` of `user`, accepted by the incarnation `node`/`boot` that died with them open,
/// on a task of its own (the caller is an actor that must not wait on the database).
pub(crate) fn record_crashed(store: Arc<dyn ConversationStore>, user: &UserId, node: &str, boot: Option<&str>, turns: &[String]) {
    if turns.is_empty() {
        return;
    }
    let turns: Vec<AbandonedTurn> = turns
        .iter()
        .map(|id| AbandonedTurn {
            user: user.clone(),
            client_msg_id: id.clone(),
            node: node.to_string(),
            boot: boot.filter(|b| !b.is_empty()).map(str::to_string),
            cause: AbandonCause::Crash,
        })
        .collect();
    tokio::spawn(async move {
        for attempt in 1..=TRIES {
            match bounded(store.record_abandoned(&turns)).await {
                Ok(new) => {
                    tracing::debug!(turns = turns.len(), new, node = %turns[0].node, "turns of a dead node recorded as abandoned");
                    return;
                }
                Err(error) if attempt == TRIES => {
                    return tracing::warn!(%error, turns = turns.len(), node = %turns[0].node, user = %turns[0].user,
                        "could not record a dead node's turns as abandoned; pam_turns_abandoned_recent misses them");
                }
                Err(_) => tokio::time::sleep(RETRY_PAUSE).await,
            }
        }
    });
}
