//! The connection state machine: one enum instead of scattered booleans.
//! A leaf.

use tokio::time::Instant;

/// Keepalive sub-state of a ready connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keepalive {
    /// A frame arrived since the last ping.
    Alive,
    /// Pings went out and nothing came back yet.
    AwaitingPong { since: Instant, missed: u32 },
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnectionPhase {
    Accepted,
    Authenticating,
    Ready {
        keepalive: Keepalive,
    },
    /// Shutting down: no new chats, waiting for running ones.
    Draining,
    Closed {
        code: u16,
    },
}

impl ConnectionPhase {
    /// Label for `pam_ws_connections{state}`; `None` once closed (no longer counted).
    pub(crate) fn label(&self) -> Option<&'static str> {
        match self {
            ConnectionPhase::Accepted => Some("accepted"),
            ConnectionPhase::Authenticating => Some("authenticating"),
            ConnectionPhase::Ready { .. } => Some("ready"),
            ConnectionPhase::Draining => Some("draining"),
            ConnectionPhase::Closed { .. } => None,
        }
    }

    pub(crate) fn is_ready(&self) -> bool {
        matches!(self, ConnectionPhase::Ready { .. })
    }

    pub(crate) fn is_closed(&self) -> bool {
        matches!(self, ConnectionPhase::Closed { .. })
    }

    /// Any inbound frame proves the peer is alive.
    pub(crate) fn saw_peer(&mut self) {
        if let ConnectionPhase::Ready { keepalive } = self {
            *keepalive = Keepalive::Alive;
        }
    }

    /// A ping went out.
    pub(crate) fn pinged(&mut self, now: Instant) {
        if let ConnectionPhase::Ready { keepalive } = self {
            *keepalive = match *keepalive {
                Keepalive::Alive => Keepalive::AwaitingPong { since: now, missed: 1 },
                Keepalive::AwaitingPong { since, missed } => Keepalive::AwaitingPong { since, missed: missed + 1 },
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_accumulate_until_the_peer_speaks() {
        let now = Instant::now();
        let mut phase = ConnectionPhase::Ready { keepalive: Keepalive::Alive };
        phase.pinged(now);
        phase.pinged(now);
        assert_eq!(phase, ConnectionPhase::Ready { keepalive: Keepalive::AwaitingPong { since: now, missed: 2 } });
        phase.saw_peer();
        assert_eq!(phase, ConnectionPhase::Ready { keepalive: Keepalive::Alive });
    }

    #[test]
    fn only_live_phases_are_counted() {
        assert_eq!(ConnectionPhase::Closed { code: 1000 }.label(), None);
        assert_eq!(ConnectionPhase::Authenticating.label(), Some("authenticating"));
        let mut phase = ConnectionPhase::Authenticating;
        phase.pinged(Instant::now());
        assert_eq!(phase, ConnectionPhase::Authenticating);
    }
}
