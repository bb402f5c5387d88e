//! The `pam-loadtest` binary's command line: a `--url` that is not `ws://` is a usage error
//! (exit 2) whose message names `ws://`, before any connection is tried.

use std::process::Command;

fn run(args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_pam-loadtest")).args(args).output().expect("pam-loadtest runs");
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn an_http_url_is_refused_with_exit_code_2_and_a_message_naming_ws() {
    for url in ["http://127.0.0.1:8080", "https://pam.example.com"] {
        for scenario in ["legacy-chat", "idle", "storm", "ping"] {
            let (code, stderr) = run(&[scenario, "--url", url]);
            assert_eq!(code, Some(2), "{scenario} {url}: {stderr}");
            assert!(stderr.contains("--url must start with ws://"), "{scenario} {url}: {stderr}");
        }
    }
    let (code, stderr) = run(&["legacy-chat", "--url", "http://127.0.0.1:8080"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("use ws://127.0.0.1:8080"), "{stderr}");
}
