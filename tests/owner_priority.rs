//! The owners' priority as the kernel sees it (`/proc/self/task/*/stat`): by default every
//! `dave-shard-*` thread runs at nice `owner_nice` under the normal policy and the PUT lane's
//! receiver at the same nice, the other receivers at nice 0; with `owner_sched_idle` the owners
//! run under SCHED_IDLE and still store what they are given; with `receiver_slice_us` the
//! receivers' scheduler slice is what they asked for (Linux 6.12+).

mod common;

use std::time::Duration;

use common::*;
use dave::{Config, Keypair, Node};

/// `SCHED_OTHER` and `SCHED_IDLE` (`linux/sched.h`), as `stat` reports a thread's policy.
const SCHED_OTHER: i64 = 0;
const SCHED_IDLE: i64 = 5;

/// (name, task directory) of every thread of this process whose name starts with `prefix`.
fn tasks(prefix: &str) -> Vec<(String, std::path::PathBuf)> {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc")
        .flatten()
        .filter_map(|task| {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            let comm = comm.trim_end().to_string();
            comm.starts_with(prefix).then(|| (comm, task.path()))
        })
        .collect()
}

/// (name, nice, policy) of every thread of this process whose name starts with `prefix`.
fn threads(prefix: &str) -> Vec<(String, i64, i64)> {
    tasks(prefix)
        .into_iter()
        .filter_map(|(comm, path)| {
            let stat = std::fs::read_to_string(path.join("stat")).unwrap_or_default();
            // Fields after the parenthesised name: state is field 3, nice 19, policy 41.
            let rest = stat.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let field = |n: usize| fields[n - 3].parse::<i64>().expect("numeric field");
            Some((comm, field(19), field(41)))
        })
        .collect()
}

/// Waits until this process has four owner threads, all at `nice` under `policy`, and
/// `receivers` receiver threads (the PUT lane's included).
fn settled(nice: i64, policy: i64, receivers: usize) -> bool {
    wait_until(Duration::from_secs(10), || {
        let owners = threads("dave-shard-");
        owners.len() == 4
            && owners.iter().all(|&(_, n, p)| (n, p) == (nice, policy))
            && threads("dave-rx-").len() == receivers
    })
}

#[test]
fn owners_run_below_the_receivers_and_under_sched_idle_when_asked() {
    // One test for both nodes: the tests of one binary share the process's thread list.
    let node = Node::start(Config {
        receiver_threads: 2,
        ..test_config([127, 0, 0, 60], vec![])
    })
    .expect("node starts");
    // A thread names itself and lowers its own priority once it runs: wait until all have.
    assert!(
        settled(10, SCHED_OTHER, 3),
        "four owners at nice 10 and three receivers: {:?} {:?}",
        threads("dave-shard-"),
        threads("dave-rx-")
    );
    assert_eq!(
        threads("dave-rx-put")
            .iter()
            .map(|&(_, nice, _)| nice)
            .collect::<Vec<_>>(),
        [10],
        "the PUT lane at the owners' nice"
    );
    let receivers: Vec<_> = threads("dave-rx-")
        .into_iter()
        .filter(|(name, ..)| name != "dave-rx-put")
        .collect();
    assert!(
        receivers.iter().all(|&(_, nice, _)| nice == 0),
        "{receivers:?}"
    );
    drop(node);

    let node = Node::start(Config {
        owner_sched_idle: true,
        ..test_config([127, 0, 0, 61], vec![])
    })
    .expect("node starts");
    // The first node's threads are gone (joined on drop); the new owners are under SCHED_IDLE,
    // a policy that ignores nice (`stat` shows 0).
    assert!(
        settled(0, SCHED_IDLE, 2),
        "four owners under SCHED_IDLE: {:?}",
        threads("dave-shard-")
    );
    // They still store what arrives.
    let owner = Keypair::from_seed(&[61; 32]);
    let now = dave::time::unix_now_ms() - 1_000;
    let dat = dave::pow::make_dat_single(&owner, b"key", b"value", now, TEST_WORK_BITS);
    node.put_dat(dat).expect("put");
    assert!(wait_until(Duration::from_secs(10), || node.stats().records == 1));
    drop(node);

    // A receiver asks for a shorter slice (`receiver_slice_us`); Linux 6.12+ keeps it.
    let node = Node::start(Config {
        receiver_slice_us: 200,
        ..test_config([127, 0, 0, 62], vec![])
    })
    .expect("node starts");
    assert!(settled(10, SCHED_OTHER, 2));
    // The receiver asks once it runs: wait for it.
    let asked = wait_until(Duration::from_secs(10), || {
        receiver_slices_ns()
            .iter()
            .any(|&(ref name, ns)| name == "dave-rx-0" && ns == 200_000)
    });
    if kernel_at_least(6, 12) {
        assert!(asked, "{:?}", receiver_slices_ns());
    } else {
        // Older kernels ignore the runtime of a normal thread: the node must still run.
        assert!(
            receiver_slices_ns()
                .iter()
                .any(|(name, _)| name == "dave-rx-0")
        );
    }
    drop(node);
}

/// (name, `se.slice` in ns) of this process's receiver threads, from `/proc/self/task/*/sched`.
fn receiver_slices_ns() -> Vec<(String, u64)> {
    tasks("dave-rx-")
        .into_iter()
        .map(|(comm, path)| {
            let sched = std::fs::read_to_string(path.join("sched")).unwrap_or_default();
            let slice = sched
                .lines()
                .find(|l| l.starts_with("se.slice"))
                .and_then(|l| l.split(':').nth(1))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0);
            (comm, slice)
        })
        .collect()
}

/// Whether the running kernel's version is at least `major.minor`.
fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let number = |p: Option<&str>| p.and_then(|s| s.parse::<u32>().ok()).unwrap_or(0);
    let (a, b) = (number(parts.next()), number(parts.next()));
    (a, b) >= (major, minor)
}
