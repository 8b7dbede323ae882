//! The `dave` binary without a network: key files, and every start-up error ending in one
//! `dave: ` line and a non-zero exit status.

mod cli_support;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use cli_support::*;

const QUICK: Duration = Duration::from_secs(20);

#[test]
fn keygen_writes_a_private_key_file_and_refuses_to_overwrite_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("owner.key");
    let path_str = path.to_str().unwrap();

    let out = dave(&["keygen", "--out", path_str], QUICK);
    assert_eq!(out.code(), 0, "{out:?}");
    let printed = out.stdout.trim();
    assert_eq!(printed.len(), 64, "hex public key: {out:?}");
    assert_eq!(printed, pubkey_hex(&path), "printed key is the file's");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let before = std::fs::read(&path).unwrap();

    let again = dave(&["keygen", "--out", path_str], QUICK);
    assert_ne!(again.code(), 0);
    again.assert_one_dave_line();
    assert!(again.stderr.contains("--force"), "{again:?}");
    assert_eq!(std::fs::read(&path).unwrap(), before, "file untouched");

    let forced = dave(&["keygen", "--out", path_str, "--force"], QUICK);
    assert_eq!(forced.code(), 0, "{forced:?}");
    assert_ne!(
        std::fs::read(&path).unwrap(),
        before,
        "replaced with --force"
    );
    assert_eq!(forced.stdout.trim(), pubkey_hex(&path));
}

#[test]
fn a_bad_flag_is_one_line_and_non_zero() {
    for args in [
        &["node", "--bogus"][..],
        &["node", "--min-work", "lots"],
        &["put", "--edge", "127.0.0.1:1", "--key", "k"], // KEY VALUE missing
        &["frobnicate"],
        &[],
    ] {
        let out = dave(args, QUICK);
        assert_ne!(out.code(), 0, "{args:?}: {out:?}");
        out.assert_one_dave_line();
    }
    let help = dave(&["--help"], QUICK);
    assert_eq!(help.code(), 0);
    assert!(help.stdout.contains("demo"));
}

#[test]
fn an_unreadable_or_invalid_key_file_is_one_line_and_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.key");
    let short = dir.path().join("short.key");
    std::fs::write(&short, [7u8; 10]).unwrap();
    for key in [&missing, &short] {
        let key = key.to_str().unwrap();
        let out = dave(&["node", "--listen", "127.0.0.1:0", "--key", key], QUICK);
        assert_ne!(out.code(), 0, "{out:?}");
        out.assert_one_dave_line();
        assert!(out.stderr.contains(key), "names the file: {out:?}");
        let put = dave(
            &["put", "--edge", "127.0.0.1:9", "--key", key, "k", "v"],
            QUICK,
        );
        assert_ne!(put.code(), 0, "{put:?}");
        put.assert_one_dave_line();
    }
}

#[test]
fn a_port_in_use_is_one_line_and_non_zero() {
    let taken = std::net::UdpSocket::bind("127.0.0.60:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let mut args = vec!["node", "--listen", &addr];
    args.extend(SMALL);
    let out = dave(&args, QUICK);
    assert_ne!(out.code(), 0, "{out:?}");
    out.assert_one_dave_line();
    assert!(out.stderr.contains("in use"), "{out:?}");
}

#[test]
fn a_bad_config_file_is_one_line_and_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("syntax.toml", "listen_addr = \n", "line 1"),
        (
            "unknown.toml",
            "listen_addr = \"127.0.0.1:0\"\nfanout_typo = 3\n",
            "line 2",
        ),
        ("invalid.toml", "fanout = 0\n", "fanout"),
        ("sync.toml", "sync = \"sometimes\"\n", "sync"),
    ];
    for (name, text, mentions) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let out = dave(&["node", "--config", path.to_str().unwrap()], QUICK);
        assert_ne!(out.code(), 0, "{name}: {out:?}");
        out.assert_one_dave_line();
        assert!(out.stderr.contains(mentions), "{name}: {out:?}");
    }
    let missing = dir.path().join("missing.toml");
    let out = dave(&["node", "--config", missing.to_str().unwrap()], QUICK);
    assert_ne!(out.code(), 0);
    out.assert_one_dave_line();
}

#[test]
fn a_config_file_is_applied_and_flags_override_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.toml");
    std::fs::write(
        &path,
        "listen_addr = \"127.0.0.61:0\"\nreceiver_threads = 1\nshard_owner_threads = 4\n\
         pin_cores = false\nmin_work_bits = 8\nbackup_path = \"node.backup\"\n\
         sync = \"every-write\"\n",
    )
    .unwrap();
    let config = path.to_str().unwrap();
    let mut node = NodeProcess::start(&["--config", config]);
    assert_eq!(node.addr.ip().to_string(), "127.0.0.61");
    node.wait_for_line("sync every-write", Duration::from_secs(5));
    assert!(
        dir.path().join("node.backup").exists(),
        "relative backup path is relative to the config file"
    );
    sigterm(node.guard.pid());
    assert!(node.guard.wait_for(Duration::from_secs(5)).is_some());

    let node = NodeProcess::start(&["--config", config, "--listen", "127.0.0.62:0"]);
    assert_eq!(node.addr.ip().to_string(), "127.0.0.62", "the flag wins");
}

#[test]
fn get_refuses_a_bad_owner_and_times_out_without_an_edge() {
    let out = dave(
        &["get", "--edge", "127.0.0.1:9", "--owner", "xyz", "k"],
        QUICK,
    );
    assert_eq!(out.code(), 3, "{out:?}");
    out.assert_one_dave_line();

    // Nobody listens on 127.0.0.63:9: no answer, exit status 2, within about the timeout.
    let owner = "00".repeat(32);
    let start = Instant::now();
    let out = dave(
        &[
            "get",
            "--edge",
            "127.0.0.63:9",
            "--owner",
            &owner,
            "--timeout",
            "500",
            "k",
        ],
        QUICK,
    );
    assert_eq!(out.code(), 2, "{out:?}");
    out.assert_one_dave_line();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}
