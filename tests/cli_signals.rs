//! `dave node` and signals, with real child processes: SIGHUP is a clean, logged shutdown (exit
//! 0, backup closed) like SIGTERM; a node with a backup but no `--key` warns that its identity
//! will not survive a restart.

mod cli_support;

use std::time::Duration;

use cli_support::*;

const QUICK: Duration = Duration::from_secs(20);

fn signal(pid: u32, name: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("run kill(1)");
    assert!(status.success(), "kill -{name} {pid}: {status}");
}

#[test]
fn sighup_shuts_the_node_down_cleanly_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("hup.log");
    let mut args = vec!["--listen", "127.0.0.1:0", "--backup", log.to_str().unwrap()];
    args.extend_from_slice(&SMALL);
    let mut node = NodeProcess::start(&args);
    node.wait_for_line("backup:", QUICK);
    signal(node.guard.pid(), "HUP");
    node.wait_for_line("SIGHUP received: shutting down", QUICK);
    node.wait_for_line("stopped in", QUICK);
    let status = node.guard.wait_for(QUICK).expect("exits");
    assert_eq!(
        status.code(),
        Some(0),
        "clean exit: {status:?}\n{}",
        node.log()
    );
    // The lock was released with the process: another node can open the log at once.
    let mut again = NodeProcess::start(&args);
    sigterm(again.guard.pid());
    again.wait_for_line("SIGTERM received: shutting down", QUICK);
    assert_eq!(again.guard.wait_for(QUICK).and_then(|s| s.code()), Some(0));
}

#[test]
fn a_backup_without_a_key_warns() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("nokey.log");
    let mut args = vec!["--listen", "127.0.0.1:0", "--backup", log.to_str().unwrap()];
    args.extend_from_slice(&SMALL);
    let mut node = NodeProcess::start(&args);
    // Logged before "listening on", which `start` waited for.
    let log_text = node.log();
    let line = log_text
        .lines()
        .find(|l| l.contains("persistent key"))
        .unwrap_or_else(|| panic!("no warning: {log_text}"));
    assert!(line.contains("WARN") && line.contains("--key"), "{line}");

    let key = dir.path().join("node.key");
    let out = dave(&["keygen", "--out", key.to_str().unwrap()], QUICK);
    assert_eq!(out.code(), 0, "{out:?}");
    sigterm(node.guard.pid());
    node.wait_for_line("stopped in", QUICK);
    assert!(node.guard.wait_for(QUICK).is_some());

    args.extend_from_slice(&["--key", key.to_str().unwrap()]);
    let mut keyed = NodeProcess::start(&args);
    keyed.wait_for_line("backup:", QUICK);
    sigterm(keyed.guard.pid());
    keyed.wait_for_line("stopped in", QUICK);
    assert!(
        !keyed.log().contains("persistent key"),
        "no warning with --key: {}",
        keyed.log()
    );
}
