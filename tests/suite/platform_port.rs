//! The binary on a hosting platform (Render, Heroku, Fly, Cloud Run): the platform names the port
//! in `PORT` and routes to it from outside, so without `PAM_LISTEN` the gateway listens there on
//! every interface.

use std::process::Stdio;

use crate::common::TempFile;
use crate::common::process::{KillOnDrop, free_port, gateway, temp_db, wait_live};

#[tokio::test]
async fn port_without_pam_listen_serves_on_every_interface_at_that_port() {
    let port = free_port();
    let db = temp_db();
    let log_path = std::env::temp_dir().join(format!("pam-port-{}.log", uuid::Uuid::new_v4().simple()));
    let _log_cleanup = TempFile(log_path.clone());
    let log = std::fs::File::create(&log_path).unwrap();
    let mut command = gateway(0, &db, &[("PORT", &port.to_string())]);
    command.env_remove("PAM_LISTEN").stdout(log.try_clone().unwrap()).stderr(Stdio::from(log));
    let mut child = KillOnDrop(command.spawn().expect("the binary starts"));

    wait_live(&mut child.0, port, &log_path).await;
    let logs = std::fs::read_to_string(&log_path).unwrap();
    let listening = logs.lines().find(|l| l.contains("pam-gateway listening")).unwrap_or_else(|| panic!("no listening line: {logs}"));
    assert!(listening.contains(&format!("\"address\":\"0.0.0.0:{port}\"")), "{listening}");
}
