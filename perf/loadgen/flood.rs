//! `flood`: a GET client alone, then during a flood of `--multiplier` x `--capacity` (forged
//! PUTs by default: valid work, wrong signature); drops reported by reason.

use std::sync::atomic::AtomicBool;
use std::thread;
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde_json::{Value, json};

use crate::Result;
use crate::get::{
    GetArgs, get_pace, get_records, get_sockets, handshake, load_keys, run_get_clients,
};
use crate::net::{ServerProbe, check_duration, check_target, round3};
use crate::put::{Stream, put_sockets, send_stream};
use crate::records::owner_keys;

/// What a flood sends.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FloodKind {
    /// PUTs with valid work and a signature by another owner: each costs a full verification
    /// the first time; 8,192 such records cycled, so the node may remember the refusals.
    ForgedPut,
    /// The same forgeries with the send count written into the signature's first 8 bytes:
    /// every datagram is a record never seen before (free for a forger), so remembering
    /// refusals does not help and each one reaching an owner costs a verification.
    FreshForgedPut,
    /// Valid PUTs, cycling over cached records (repeats are duplicates).
    ValidPut,
    /// GETs for loaded keys.
    Get,
}

#[derive(Args, Debug, Clone)]
pub(crate) struct FloodArgs {
    #[command(flatten)]
    pub(crate) get: GetArgs,
    /// The node's capacity for this kind of datagram, per second (e.g. measured PUT stored/s).
    #[arg(long, default_value_t = 40_000.0)]
    pub(crate) capacity: f64,
    /// Flood rate = multiplier x capacity.
    #[arg(long, default_value_t = 5.0)]
    pub(crate) multiplier: f64,
    /// What the flood sends.
    #[arg(long, value_enum, default_value_t = FloodKind::ForgedPut)]
    pub(crate) kind: FloodKind,
    /// Flood sockets (threads), on addresses after the GET clients'.
    #[arg(long, default_value_t = 2)]
    pub(crate) flood_clients: usize,
    /// Datagrams per send with UDP GSO (`UDP_SEGMENT`: the kernel cuts one buffer into that
    /// many datagrams), 0 = one `sendmmsg` entry per datagram (the default). With GSO the flood
    /// costs this machine one trip through the network stack per send, not per datagram, as a
    /// flood from other machines would cost it none. A node whose PUT lane takes coalesced runs
    /// (`Config::put_lane_gro`) then receives each send whole; otherwise the kernel cuts it
    /// into datagrams before the node's socket. At most [`MAX_GSO_SEGMENTS`].
    #[arg(long, default_value_t = 0)]
    pub(crate) gso_segments: usize,
}

/// Most datagrams the kernel cuts one UDP GSO send into (`UDP_MAX_SEGMENTS`, 64 before Linux 6.5).
pub(crate) const MAX_GSO_SEGMENTS: usize = 64;

pub(crate) fn run_flood(f: &FloodArgs) -> Result<Value> {
    let a = &f.get;
    check_target(a.net.target)?;
    let duration = check_duration(a.net.duration)?;
    if f.flood_clients == 0 || f.flood_clients > 32 {
        return Err("--flood-clients must be 1..=32".into());
    }
    if f.gso_segments > MAX_GSO_SEGMENTS {
        return Err(format!("--gso-segments must be 0..={MAX_GSO_SEGMENTS}"));
    }
    let (pace, clients) = get_pace(a)?;
    let pool_len = 8192usize;
    let set = get_records(a, pool_len)?;
    let load = if a.skip_load {
        Value::Null
    } else {
        load_keys(a, &set)?
    };
    // The flood's datagrams. Forged PUTs reuse valid work under another owner's key: the work
    // checks pass, so the node pays for the signature check and refuses it (bad_signature).
    let owners = owner_keys(&a.records);
    let pool: Vec<Box<[u8]>> = match f.kind {
        FloodKind::Get => set.gets[..a.keys].to_vec(),
        FloodKind::ValidPut => set.puts[a.keys..a.keys + pool_len].to_vec(),
        FloodKind::ForgedPut | FloodKind::FreshForgedPut => set.puts[a.keys..a.keys + pool_len]
            .iter()
            .enumerate()
            .map(|(j, p)| {
                let mut p = p.clone();
                let other = owners[(j + 1) % owners.len()].public();
                // PUT = op, len(2), dat; the pubkey is at dat offset 120.
                p[3 + 120..3 + 152].copy_from_slice(&other);
                p
            })
            .collect(),
    };
    let pool_refs: Vec<&[u8]> = pool.iter().map(|b| &b[..]).collect();
    // PUT = op, len(2), dat; the signature is at dat offset 56.
    let stamp_at = (f.kind == FloodKind::FreshForgedPut).then_some(3 + 56);
    let get_socks = get_sockets(a.net.source_base, 1, clients, pace)?;
    let keypairs = handshake(a, &get_socks)?;
    let flood_socks = put_sockets(a.net.source_base, 1 + clients, f.flood_clients)?;
    let stop = AtomicBool::new(false);
    let timeout = Duration::from_millis(a.net.timeout_ms);
    let gets = &set.gets[..a.keys];
    // Phase 1: the GET client alone.
    let quiet = run_get_clients(
        &get_socks,
        &keypairs,
        a.net.target,
        gets,
        pace,
        duration,
        a.net.count,
        timeout,
        &stop,
    );
    thread::sleep(Duration::from_millis(200));
    // Phase 2: the same client during the flood.
    let rate = f.capacity * f.multiplier;
    let probe = ServerProbe::start(&a.net);
    let flood_duration = duration + Duration::from_millis(400);
    let stop = &stop;
    let keypairs = &keypairs;
    let (noisy, flooded) = thread::scope(|s| {
        let flood = s.spawn(|| {
            let per = rate / f.flood_clients as f64;
            thread::scope(|s2| {
                let hs: Vec<_> = flood_socks
                    .iter()
                    .enumerate()
                    .map(|(i, sock)| {
                        let mine: Vec<&[u8]> = pool_refs
                            .iter()
                            .skip(i)
                            .step_by(f.flood_clients)
                            .copied()
                            .collect();
                        s2.spawn(move || {
                            let stream = Stream {
                                target: a.net.target,
                                datagrams: &mine,
                                stamp_at,
                                rate: per,
                                duration: flood_duration,
                                count: u64::MAX,
                            };
                            send_stream(sock, &stream, f.gso_segments, stop)
                        })
                    })
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap_or(0)).sum::<u64>()
            })
        });
        thread::sleep(Duration::from_millis(200));
        let g = run_get_clients(
            &get_socks,
            keypairs,
            a.net.target,
            gets,
            pace,
            duration,
            a.net.count,
            timeout,
            stop,
        );
        (g, flood.join().unwrap_or(0))
    });
    let (server, after) = probe.finish();
    let quiet_rate = quiet.received as f64 / quiet.secs.max(1e-9);
    let noisy_rate = noisy.received as f64 / noisy.secs.max(1e-9);
    Ok(json!({
        "target": a.net.target.to_string(),
        "kind": format!("{:?}", f.kind),
        "flood_rate_asked": rate.round(),
        "flood_gso_segments": f.gso_segments,
        "flood_sent": flooded,
        "flood_offered_per_s": (flooded as f64 / flood_duration.as_secs_f64()).round(),
        "get_alone": quiet.report(),
        "get_during_flood": noisy.report(),
        "get_ratio": round3(noisy_rate / quiet_rate.max(1e-9)),
        "node_alive_after": after.is_some() || a.net.stats_addr.is_none(),
        "server": server,
        "load": load,
    }))
}
