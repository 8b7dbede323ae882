//! `mixed`: GETs in flight and PUTs at a fixed rate together.

use std::sync::atomic::AtomicBool;
use std::thread;
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::{Value, json};

use crate::Result;
use crate::get::{
    GetArgs, get_pace, get_records, get_sockets, handshake, load_keys, run_get_clients,
};
use crate::net::{ServerProbe, check_duration, check_target};
use crate::put::{drain_puts, put_report, put_sockets, run_put_clients};

#[derive(Args, Debug, Clone)]
pub(crate) struct MixedArgs {
    #[command(flatten)]
    pub(crate) get: GetArgs,
    /// PUTs per second alongside the GETs.
    #[arg(long, default_value_t = 5_000.0)]
    pub(crate) put_rate: f64,
}

pub(crate) fn run_mixed(m: &MixedArgs) -> Result<Value> {
    let a = &m.get;
    check_target(a.net.target)?;
    let duration = check_duration(a.net.duration)?;
    let (pace, clients) = get_pace(a)?;
    let put_count = (m.put_rate * a.net.duration) as usize + 1;
    let set = get_records(a, put_count)?;
    let load = if a.skip_load {
        Value::Null
    } else {
        load_keys(a, &set)?
    };
    let get_socks = get_sockets(a.net.source_base, 1, clients, pace)?;
    let keypairs = handshake(a, &get_socks)?;
    let put_socks = put_sockets(a.net.source_base, 1 + clients, 1)?;
    let stop = AtomicBool::new(false);
    let timeout = Duration::from_millis(a.net.timeout_ms);
    let probe = ServerProbe::start(&a.net);
    let t0 = Instant::now();
    let (gets, sent) = thread::scope(|s| {
        let p = s.spawn(|| {
            run_put_clients(
                &put_socks,
                a.net.target,
                &set.puts[a.keys..],
                m.put_rate,
                duration,
                u64::MAX,
                0,
                &stop,
            )
        });
        let g = run_get_clients(
            &get_socks,
            &keypairs,
            a.net.target,
            &set.gets[..a.keys],
            pace,
            duration,
            a.net.count,
            timeout,
            &stop,
        );
        (g, p.join().unwrap_or(0))
    });
    let send_secs = t0.elapsed().as_secs_f64();
    let (after, last_change) = drain_puts(&probe, sent, Duration::from_secs(5));
    let busy = last_change.duration_since(t0).as_secs_f64().max(send_secs);
    let puts = put_report(sent, send_secs, &probe.stats, &after, busy);
    let (server, _) = probe.finish();
    Ok(json!({
        "target": a.net.target.to_string(),
        "get": gets.report(),
        "put": puts,
        "clients": clients,
        "in_flight": a.in_flight,
        "load": load,
        "server": server,
    }))
}
