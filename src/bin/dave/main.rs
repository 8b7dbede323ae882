//! The `dave` command line: a thin layer over the library, in the manner of ripgrep's
//! `crates/core/main.rs`. Parsing lives in `args` (clap), turning flags and TOML into a
//! `dave::Config` in `settings`, and each command in its own module; this file only dispatches
//! and turns a failure into one `dave: ...` line on stderr and an exit status.
//!
//! Exit status: 0 success; 1 `get` found nothing; 2 `get`/`put` got no answer in time;
//! 3 any other error (bad flags, unreadable files, port in use, bad configuration); 4 `put`
//! sent a record that no peer asked afterwards holds;
//! 130 interrupted.

#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod args;
mod backup_cmd;
mod bytes;
mod client;
mod demo_cmd;
mod node_cmd;
mod settings;
mod sim_cmd;

use std::fmt;
use std::io::Write;

use clap::Parser;
use clap::error::ErrorKind;

use args::{Cli, Command, KeygenArgs};

/// Success.
pub const EXIT_OK: i32 = 0;
/// `dave get`: every asked peer said "not found".
pub const EXIT_NOT_FOUND: i32 = 1;
/// `dave get` / `dave put`: no answer within the timeout.
pub const EXIT_TIMED_OUT: i32 = 2;
/// Any other failure.
pub const EXIT_ERROR: i32 = 3;
/// `dave put`: a record was sent but no peer asked afterwards holds it.
pub const EXIT_NOT_STORED: i32 = 4;
/// Stopped by SIGINT/SIGTERM before finishing (128 + SIGINT, as shells report it).
pub const EXIT_INTERRUPTED: i32 = 130;

/// A failure that ends the program: one line for stderr and an exit status.
#[derive(Debug)]
pub struct Failure {
    /// Exit status.
    pub code: i32,
    /// The message, without the `dave: ` prefix.
    pub message: String,
}

impl Failure {
    /// A failure with [`EXIT_ERROR`].
    pub fn error(message: impl Into<String>) -> Failure {
        Failure::with_code(EXIT_ERROR, message)
    }

    /// A failure with a specific exit status.
    pub fn with_code(code: i32, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Always one line, whatever a lower layer put in its message.
        let mut first = true;
        for line in self
            .message
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
        {
            if !first {
                f.write_str("; ")?;
            }
            f.write_str(line)?;
            first = false;
        }
        Ok(())
    }
}

fn main() {
    let code = match Cli::try_parse() {
        Ok(cli) => match run(cli) {
            Ok(code) => code,
            Err(failure) => {
                eprintln!("dave: {failure}");
                failure.code
            }
        },
        Err(err) => match err.kind() {
            ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                let _ = err.print();
                EXIT_OK
            }
            _ => {
                eprintln!("dave: {}", clap_one_line(&err));
                EXIT_ERROR
            }
        },
    };
    std::process::exit(code);
}

/// clap's error as one line: its first line without the `error: ` label, and a pointer to help.
fn clap_one_line(err: &clap::Error) -> String {
    if err.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        return "a command is needed: keygen, node, put, get, import, export, inspect, demo or sim \
             (see 'dave --help')"
            .into();
    }
    // The message runs until the first blank line or the usage; tips and usage are left out.
    let text = err.render().to_string();
    let mut parts = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() && !parts.is_empty() || line.starts_with("Usage:") {
            break;
        }
        if !line.is_empty() {
            parts.push(line);
        }
    }
    let joined = parts.join(" ");
    let first = joined.strip_prefix("error: ").unwrap_or(&joined);
    let first = if first.is_empty() {
        "invalid arguments"
    } else {
        first
    };
    format!("{first} (see 'dave --help')")
}

fn init_logging() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_target(false)
        .init();
}

fn run(cli: Cli) -> Result<i32, Failure> {
    match cli.command {
        Command::Keygen(args) => keygen(&args),
        Command::Node(args) => {
            init_logging();
            node_cmd::run(&args)
        }
        Command::Put(args) => {
            init_logging_quiet();
            client::put(&args)
        }
        Command::Get(args) => {
            init_logging_quiet();
            client::get(&args)
        }
        Command::Demo(args) => {
            init_logging_quiet();
            demo_cmd::run(&args)
        }
        Command::Sim(args) => {
            init_logging_quiet();
            sim_cmd::run(&args)
        }
        Command::Import(args) => {
            init_logging_quiet();
            backup_cmd::import(&args)
        }
        Command::Export(args) => {
            init_logging_quiet();
            backup_cmd::export(&args)
        }
        Command::Inspect(args) => {
            init_logging_quiet();
            backup_cmd::inspect(&args)
        }
    }
}

/// Short-lived commands print their results themselves; the library's log lines (backup
/// replay, …) are shown only when asked for with `RUST_LOG`.
fn init_logging_quiet() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_target(false)
        .init();
}

fn keygen(args: &KeygenArgs) -> Result<i32, Failure> {
    let pair = dave::Keypair::generate();
    pair.write_file(&args.out, args.force)
        .map_err(|e| match e {
            dave::keys::KeyFileError::Io(io) if io.kind() == std::io::ErrorKind::AlreadyExists => {
                Failure::error(format!(
                    "{} already exists; use --force to replace it",
                    args.out.display()
                ))
            }
            e => Failure::error(format!("cannot write key file {}: {e}", args.out.display())),
        })?;
    eprintln!("wrote {} (mode 0600); public key:", args.out.display());
    print_stdout(format!("{}\n", hex::encode(pair.public())).as_bytes())?;
    Ok(EXIT_OK)
}

/// Writes to stdout; a closed pipe (`dave get ... | head -c 0`) is not an error, as in ripgrep.
pub fn print_stdout(bytes: &[u8]) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Failure::error(format!("cannot write to stdout: {e}"))),
    }
}
