//! `summarize`: medians per tag and per-run ratios of a JSONL results file written with
//! `--json --tag --run`.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, BufRead, Write};
use std::path::PathBuf;

use clap::Args;
use serde_json::{Value, json};

use crate::Result;
use crate::net::round3;

#[derive(Args, Debug, Clone)]
pub(crate) struct SummarizeArgs {
    /// JSONL file written by runs with --json --tag --run.
    pub(crate) file: PathBuf,
    /// Ratios to report, as NUMTAG[:metric]/DENTAG[:metric] (metric default ops_per_s): the
    /// median of the per-run ratios.
    #[arg(long)]
    pub(crate) ratio: Vec<String>,
    /// Print JSON instead of a markdown table.
    #[arg(long)]
    pub(crate) json_out: bool,
}

pub(crate) const METRICS: &[(&str, &str)] = &[
    ("ops_per_s", "/ops_per_s"),
    ("p50_us", "/p50_us"),
    ("p99_us", "/p99_us"),
    ("p999_us", "/p999_us"),
    ("loss_pct", "/loss_pct"),
    ("stored_per_s", "/stored_per_s"),
    ("offered_per_s", "/offered_per_s"),
    ("verified_per_s", "/verified_per_s"),
    ("cpu_us_per_dat", "/cpu_us_per_dat"),
    ("cpu_us_per_stored", "/cpu_us_per_stored"),
    ("dropped_channel_full", "/dropped_channel_full"),
    ("get_ops_per_s", "/get/ops_per_s"),
    ("get_p99_us", "/get/p99_us"),
    ("put_stored_per_s", "/put/stored_per_s"),
    ("put_loss_pct", "/put/loss_pct"),
    ("alone_ops_per_s", "/get_alone/ops_per_s"),
    ("flood_ops_per_s", "/get_during_flood/ops_per_s"),
    ("flood_p99_us", "/get_during_flood/p99_us"),
    ("get_ratio", "/get_ratio"),
    ("flood_offered_per_s", "/flood_offered_per_s"),
    ("shard_channel_full", "/server/counters/shard_channel_full"),
    ("kernel_drops", "/server/kernel_drops"),
    ("delivered_per_s", "/delivered_per_s"),
    ("cpu_ns_per_delivered", "/cpu_ns_per_delivered"),
    ("dropped", "/dropped"),
    ("node_ops_per_s", "/node/ops_per_s"),
    ("node_p50_us", "/node/p50_us"),
    ("node_p99_us", "/node/p99_us"),
    ("node_p999_us", "/node/p999_us"),
    ("node_loss_pct", "/node/loss_pct"),
    ("echo_ops_per_s", "/echo/ops_per_s"),
    ("echo_p50_us", "/echo/p50_us"),
    ("echo_p99_us", "/echo/p99_us"),
    ("echo_p999_us", "/echo/p999_us"),
    ("echo_ratio", "/echo_ratio"),
    ("node_cpu_ns_per_op", "/node/server_cpu_ns_per_op"),
    ("echo_cpu_ns_per_op", "/echo/server_cpu_ns_per_op"),
    ("rss_beyond_kv_bytes", "/rss_per_record_beyond_kv_bytes"),
    ("rss_per_record_bytes", "/rss_per_record_bytes"),
    ("node_cpu_cores", "/node_cpu_cores"),
    ("swarm_cpu_cores", "/swarm_cpu_cores"),
];

pub(crate) fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

pub(crate) fn summarize(a: &SummarizeArgs) -> Result<()> {
    let file = fs::File::open(&a.file).map_err(|e| format!("{}: {e}", a.file.display()))?;
    // tag -> metric -> run -> value
    let mut data: BTreeMap<String, BTreeMap<&str, BTreeMap<u64, f64>>> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for line in io::BufReader::new(file).lines() {
        let line = line.map_err(|e| e.to_string())?;
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let tag = v["tag"].as_str().unwrap_or("").to_string();
        let run = v["run"].as_u64().unwrap_or(0);
        if !order.contains(&tag) {
            order.push(tag.clone());
        }
        let entry = data.entry(tag).or_default();
        for (name, ptr) in METRICS {
            if let Some(x) = v.pointer(ptr).and_then(Value::as_f64) {
                entry.entry(name).or_default().insert(run, x);
            }
        }
    }
    let mut out = serde_json::Map::new();
    let mut text = String::new();
    text.push_str("| scenario | runs | metric medians |\n|---|---|---|\n");
    for tag in &order {
        let metrics = &data[tag];
        let mut row = serde_json::Map::new();
        let mut cells = Vec::new();
        let mut runs = 0;
        for (name, _) in METRICS {
            if let Some(by_run) = metrics.get(name) {
                let mut vals: Vec<f64> = by_run.values().copied().collect();
                runs = runs.max(vals.len());
                let m = median(&mut vals);
                row.insert((*name).into(), json!(round3(m)));
                cells.push(format!("{name} {}", fmt_num(m)));
            }
        }
        out.insert(tag.clone(), Value::Object(row));
        text.push_str(&format!("| {tag} | {runs} | {} |\n", cells.join(", ")));
    }
    let mut ratios = serde_json::Map::new();
    if !a.ratio.is_empty() {
        text.push_str("\n| ratio | per-run values | median |\n|---|---|---|\n");
    }
    for spec in &a.ratio {
        let Some((num, den)) = spec.split_once('/') else {
            return Err(format!(
                "--ratio {spec}: expected NUM[:metric]/DEN[:metric]"
            ));
        };
        let side = |t: &str| -> Result<BTreeMap<u64, f64>> {
            let (tag, metric) = t.split_once(':').unwrap_or((t, "ops_per_s"));
            if !METRICS.iter().any(|(n, _)| *n == metric) {
                return Err(format!("--ratio {spec}: unknown metric {metric}"));
            }
            Ok(data
                .get(tag)
                .and_then(|m| m.get(metric))
                .cloned()
                .unwrap_or_default())
        };
        let (n, d) = (side(num)?, side(den)?);
        let mut per_run: Vec<f64> = n
            .iter()
            .filter_map(|(run, x)| d.get(run).filter(|y| **y > 0.0).map(|y| x / y))
            .collect();
        let shown: Vec<String> = per_run.iter().map(|r| format!("{r:.3}")).collect();
        let m = median(&mut per_run);
        ratios.insert(spec.clone(), json!({"per_run": shown, "median": round3(m)}));
        text.push_str(&format!("| {spec} | {} | **{m:.3}** |\n", shown.join(" ")));
    }
    if a.json_out {
        println!("{}", json!({"scenarios": out, "ratios": ratios}));
    } else {
        print!("{text}");
    }
    io::stdout().flush().map_err(|e| e.to_string())
}

pub(crate) fn fmt_num(x: f64) -> String {
    if x.abs() >= 1000.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.3}")
    }
}
