//! The push bus: a push published on one node reaches every socket of the user on every node —
//! and only the nodes holding one; a node without a socket of the user never hears of it.

use crate::common::nodes::{spawn_node, spawn_with, wait_subscribed};
use crate::common::redis::{fresh_prefix, redis, redis_url};
use crate::common::*;
use pam_actors::PushStats;
use pam_gateway::Overrides;
use pam_protocol::UserId;
use serde_json::json;

fn stats(published: u64, received: u64, delivered: u64) -> PushStats {
    PushStats { published, received, delivered }
}

#[tokio::test]
async fn a_push_published_on_a_reaches_the_users_sockets_on_b_and_a_and_never_a_third_node() {
    let redis = redis().await;
    let prefix = fresh_prefix();
    let [a, b, c] = [
        spawn_node("node-a", &redis_url(), &prefix, |_| {}, Overrides::default()).await,
        spawn_node("node-b", &redis_url(), &prefix, |_| {}, Overrides::default()).await,
        spawn_node("node-c", &redis_url(), &prefix, |_| {}, Overrides::default()).await,
    ];
    for node in [&a, &b, &c] {
        wait_subscribed(&redis, &prefix, &node.id).await;
    }
    let mut on_a = connect_user(&a.app, USER).await;
    let mut on_b = [connect_user(&b.app, USER).await, connect_user(&b.app, USER).await];
    let mut other_on_c = connect_user(&c.app, OTHER_USER).await;

    let alert = json!({"type": "proactive_alert", "id": "p1", "content": {"message": "Fuel is cheaper 2 km ahead"}});
    let outcome = a.push.publish(&UserId::parse(USER).unwrap(), &alert.to_string()).await;
    assert_eq!((outcome.local_sockets, outcome.remote_nodes, outcome.degraded), (1, 1, false));
    assert_eq!(on_a.recv_non_ping().await, alert);
    for socket in &mut on_b {
        assert_eq!(socket.recv_non_ping().await, alert);
    }
    wait_until("B counted its deliveries", || async { b.push.stats() == stats(0, 1, 2) }).await;
    assert_eq!(a.push.stats(), stats(1, 0, 1));
    assert_eq!(c.push.stats(), stats(0, 0, 0), "node C holds no socket of the user and heard nothing");

    // C does listen: a push for its own user reaches it (and only it).
    let other = json!({"type": "proactive_alert", "id": "p2", "content": {"message": "Budget alert"}});
    let outcome = a.push.publish(&UserId::parse(OTHER_USER).unwrap(), &other.to_string()).await;
    assert_eq!((outcome.local_sockets, outcome.remote_nodes), (0, 1));
    assert_eq!(other_on_c.recv_non_ping().await, other);
    wait_until("C counted its delivery", || async { c.push.stats() == stats(0, 1, 1) }).await;
    assert_eq!(b.push.stats(), stats(0, 1, 2), "B heard nothing of the other user's push");
    let text = a.app.metrics().await;
    assert_eq!(metric(&text, "pam_push_bus_published_total"), Some(2.0), "{text}");
    assert_eq!(metric(&text, "pam_push_bus_delivered_total"), Some(4.0), "every node of this process together");
}

#[tokio::test]
async fn without_redis_a_push_reaches_every_socket_of_the_user_on_the_one_node_and_no_one_else() {
    let node = spawn_with("solo", None, "pam", |_| {}, Overrides::default()).await;
    let mut sockets = [connect_user(&node.app, USER).await, connect_user(&node.app, USER).await];
    let mut other = connect_user(&node.app, OTHER_USER).await;
    let alert = json!({"type": "proactive_alert", "id": "p1", "content": {"message": "Check the tyre pressure"}});
    let outcome = node.push.publish(&UserId::parse(USER).unwrap(), &alert.to_string()).await;
    assert_eq!((outcome.local_sockets, outcome.remote_nodes, outcome.degraded), (2, 0, false));
    for socket in &mut sockets {
        assert_eq!(socket.recv_non_ping().await, alert);
    }
    other.send_json(json!({"type": "ping", "timestamp": 7})).await;
    assert_eq!(other.recv_non_ping().await, json!({"type": "pong", "timestamp": 7}), "the other user got nothing before the pong");
    assert_eq!(node.push.stats(), stats(1, 0, 2));
}
