//! `dave demo`: draws the progress of `dave::demo::run` and prints its report as a table.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use dave::demo::{DemoEvent, DemoOptions, DemoReport};

use crate::args::DemoArgs;
use crate::{EXIT_OK, Failure};

/// Runs the demo network and prints what happened.
pub fn run(args: &DemoArgs) -> Result<i32, Failure> {
    let options = DemoOptions {
        nodes: args.nodes as usize,
        ..DemoOptions::default()
    };
    println!(
        "dave demo: {} nodes on loopback, one process, real UDP and the protocol's timers.",
        options.nodes
    );
    println!(
        "Records use {} bits of proof-of-work (the network default is 20) so the demo is quick.",
        options.work_bits
    );
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{spinner} peers active {pos}/{len} {wide_bar} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(100));
    let mut on_event = |event: &DemoEvent| match event {
        DemoEvent::Started { addrs } => {
            bar.println(format!(
                "started {} nodes; node 0 ({}) is the edge the others join through",
                addrs.len(),
                addrs[0]
            ));
            bar.println(
                "waiting for every node to see every other as active (activation delay 5 s)",
            );
        }
        DemoEvent::Activating {
            active_links,
            wanted,
        } => {
            bar.set_length(*wanted as u64);
            bar.set_position(*active_links as u64);
        }
        DemoEvent::AllActive { after } => {
            bar.finish_and_clear();
            println!("all nodes active after {:.1} s", after.as_secs_f64());
        }
        DemoEvent::ReaderJoined { addr, peers_active } => {
            println!(
                "a reader node {addr} joined through node 0 after the puts; it sees {peers_active} peers active"
            );
        }
        DemoEvent::Put {
            key,
            value,
            sent_to,
        } => {
            let to: Vec<String> = sent_to.iter().map(|a| a.to_string()).collect();
            println!("put {key:?} = {value:?}, sent to {}", to.join(", "));
        }
    };
    let result = dave::demo::run(&options, &mut on_event);
    bar.finish_and_clear();
    let report = result.map_err(|e| Failure::error(format!("demo: {e}")))?;
    print_report(&report);
    Ok(EXIT_OK)
}

fn print_report(report: &DemoReport) {
    println!(
        "node {} wrote the records as owner {}",
        report.writer,
        hex::encode(report.owner)
    );
    println!(
        "gets on the other nodes: {}/{} returned the value (from their own copy or a peer)",
        report.gets_found, report.gets_made
    );
    println!(
        "gets by the reader {} (holds nothing, asks its closest peers): {}/{} returned the value",
        report.reader,
        report.reader_found,
        dave::demo::DEMO_RECORDS.len()
    );
    println!();
    let n = report.nodes.len();
    println!(
        "{:<9} {:<22} {:>12} {:>8} {:>14}",
        "node", "address", "active peers", "records", "gets answered"
    );
    for row in &report.nodes {
        let role = if row.index == 0 {
            " edge"
        } else if row.index == report.writer {
            " writer"
        } else {
            ""
        };
        println!(
            "{:<9} {:<22} {:>12} {:>8} {:>14}",
            format!("{}{role}", row.index),
            row.addr.to_string(),
            format!("{}/{}", row.peers_active, n - 1),
            row.records,
            row.gets_answered
        );
    }
    println!();
    println!(
        "replica placement right after the puts (a node that fetched a record keeps a copy too):"
    );
    for placement in &report.placements {
        let holders: Vec<String> = placement.holders.iter().map(usize::to_string).collect();
        println!("  {:<10} nodes {}", placement.key, holders.join(" "));
    }
    println!();
    let active = if report.all_active() {
        "every node active"
    } else {
        "not every node active at the end"
    };
    println!(
        "done in {:.1} s: {active}; stopping the nodes.",
        report.elapsed.as_secs_f64()
    );
}
