//! `dave import`, `dave export` and `dave inspect`: backup logs from the command line.
//!
//! `export` and `inspect` only read: the log is opened read-only and no lock is taken, so they
//! are safe beside a running node (which holds the log's lock). `import` reads the Go
//! reference's file and writes a *new* log; it refuses a path that exists, so it can never write
//! into a log a node holds or replace a file that is not ours.

use std::io::Write;
use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Map, Value};

use dave::backup::{
    BackupConfig, BackupWriter, ImportOptions, LogRecord, LogSummary, SyncPolicy, read_live_records,
};

use crate::args::{ExportArgs, ImportArgs, InspectArgs};
use crate::bytes::put_field;
use crate::{EXIT_OK, Failure};

/// Reference files at least this large get a progress bar (on a terminal): below it an import
/// takes well under a second.
const PROGRESS_MIN_FILE_BYTES: u64 = 16 << 20;

/// `dave import --reference GO_BACKUP --backup LOG`.
pub fn import(args: &ImportArgs) -> Result<i32, Failure> {
    let target = &args.backup;
    match std::fs::symlink_metadata(target) {
        Ok(_) => {
            return Err(Failure::error(format!(
                "{} already exists; import writes a new log only (choose another path, or \
                 move the file away if no node uses it)",
                target.display()
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(Failure::error(format!(
                "cannot check {}: {e}",
                target.display()
            )));
        }
    }
    // Opening a log removes a leftover `<LOG>.tmp` (an interrupted compaction's); if one is
    // there, it belongs to some other log's history: leave it, and the path, alone.
    let temp = dave::backup::temp_path(target);
    if std::fs::symlink_metadata(&temp).is_ok() {
        return Err(Failure::error(format!(
            "{} exists (a compaction's temporary file); import will not remove it",
            temp.display()
        )));
    }
    let source_bytes = std::fs::metadata(&args.reference)
        .map_err(|e| Failure::error(format!("cannot read {}: {e}", args.reference.display())))?
        .len();
    // Write fast and fsync once at the end (shutdown fsyncs): a failed import is simply redone.
    let mut config = BackupConfig::new(target.clone());
    config.sync_policy = SyncPolicy::Never;
    let (writer, _) = BackupWriter::open(config, |_| {})
        .map_err(|e| Failure::error(format!("cannot create {}: {e}", target.display())))?;
    let handle = writer.handle();

    let bar = if source_bytes >= PROGRESS_MIN_FILE_BYTES {
        let bar = ProgressBar::new(source_bytes);
        bar.set_style(
            ProgressStyle::with_template(
                "importing {wide_bar} {binary_bytes}/{binary_total_bytes}, {binary_bytes_per_sec}, ~{eta} left",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let mut read_bytes = 0u64;
    let mut write_error = None;
    let options = ImportOptions {
        min_work_bits: args.min_work,
        now_ms: dave::time::unix_now_ms(),
    };
    let report = dave::backup::import_reference(&args.reference, &options, |dat| {
        // Position: bytes of the records passed on (prefix + dat); skipped bytes are not seen
        // here, so the bar can end short of 100% on a damaged file.
        read_bytes += (dave::backup::REFERENCE_PREFIX_LEN + dat.len()) as u64;
        bar.set_position(read_bytes);
        if write_error.is_none()
            && let Err(e) = handle.append_put(&dat)
        {
            write_error = Some(e);
        }
    })
    .map_err(|e| Failure::error(format!("cannot import {}: {e}", args.reference.display())))?;
    bar.finish_and_clear();
    drop(handle);
    let stats = writer.shutdown();
    if let Some(e) = write_error {
        return Err(Failure::error(format!(
            "cannot write {}: {e} (the partial log is left for inspection; remove it before \
             importing again)",
            target.display()
        )));
    }
    println!(
        "imported {} records from {} into {} ({} bytes written) in {:.2} s",
        report.records_imported,
        args.reference.display(),
        target.display(),
        stats.bytes_written,
        report.duration.as_secs_f64(),
    );
    println!(
        "  layouts: {} records with their own length prefix, {} with the rewrite prefix {}",
        report.records_imported - report.rewrite_prefixes,
        report.rewrite_prefixes,
        dave::backup::REFERENCE_REWRITE_PREFIX,
    );
    if report.records_failed_verification > 0 || report.garbage_regions > 0 {
        println!(
            "  skipped: {} records that failed verification (work below {} bits, bad signature \
             or from the future), {} unreadable regions ({} bytes)",
            report.records_failed_verification,
            args.min_work,
            report.garbage_regions,
            report.garbage_bytes,
        );
    }
    Ok(EXIT_OK)
}

/// `dave export --backup LOG`: one JSON object per live record.
pub fn export(args: &ExportArgs) -> Result<i32, Failure> {
    let (records, summary) = read(&args.backup)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for dat in &records {
        let mut object = Map::new();
        object.insert("owner".into(), Value::String(hex::encode(dat.pubkey())));
        put_field(&mut object, "key", dat.key(), true);
        put_field(&mut object, "value", dat.value(), false);
        object.insert("time_ms".into(), Value::from(dat.time_ms()));
        let line = Value::Object(object).to_string();
        match writeln!(out, "{line}") {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(EXIT_OK),
            Err(e) => return Err(Failure::error(format!("cannot write to stdout: {e}"))),
        }
    }
    match out.flush() {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(EXIT_OK),
        Err(e) => return Err(Failure::error(format!("cannot write to stdout: {e}"))),
    }
    let only_tail = summary.damaged_regions == 1 && summary.damaged.first().is_some_and(|r| r.tail);
    if only_tail {
        eprintln!(
            "dave: note: {} ends in an incomplete entry ({} bytes: a node appending while it was \
             read, or a crash); it is not exported",
            args.backup.display(),
            summary.damaged_bytes
        );
    } else if summary.damaged_regions > 0 {
        eprintln!(
            "dave: warning: {} has {} damaged regions ({} bytes); records in them are not \
             exported (see 'dave inspect')",
            args.backup.display(),
            summary.damaged_regions,
            summary.damaged_bytes
        );
    }
    Ok(EXIT_OK)
}

/// `dave inspect --backup LOG`.
pub fn inspect(args: &InspectArgs) -> Result<i32, Failure> {
    let (_, summary) = read(&args.backup)?;
    let percent = |part: u64| {
        if summary.file_bytes == 0 {
            0.0
        } else {
            100.0 * part as f64 / summary.file_bytes as f64
        }
    };
    let mut text = format!(
        "{}: {} bytes\n  entries: {} records written, {} tombstones\n  live: {} records, \
         {} bytes ({:.1}%)\n  dead: {} bytes ({:.1}%): superseded versions, tombstones and \
         damage; a compaction would reclaim them\n  damaged: {} regions, {} bytes\n",
        args.backup.display(),
        summary.file_bytes,
        summary.put_entries,
        summary.delete_entries,
        summary.live_records,
        summary.live_bytes,
        percent(summary.live_bytes),
        summary.dead_bytes,
        percent(summary.dead_bytes),
        summary.damaged_regions,
        summary.damaged_bytes,
    );
    for region in &summary.damaged {
        text.push_str(&format!(
            "    at byte {}: {} bytes{}\n",
            region.offset,
            region.len_bytes,
            if region.tail {
                " (torn tail: a node's recovery truncates it)"
            } else {
                " (skipped by recovery)"
            }
        ));
    }
    if summary.damaged_regions > summary.damaged.len() as u64 {
        text.push_str(&format!(
            "    … and {} more\n",
            summary.damaged_regions - summary.damaged.len() as u64
        ));
    }
    crate::print_stdout(text.as_bytes())?;
    Ok(EXIT_OK)
}

fn read(path: &Path) -> Result<(Vec<LogRecord>, LogSummary), Failure> {
    read_live_records(path)
        .map_err(|e| Failure::error(format!("cannot read backup log {}: {e}", path.display())))
}
