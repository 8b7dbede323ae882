//! The flags, as clap parses them: plain strings and numbers, no I/O. Resolving names, reading
//! files and merging with a TOML file happen in `settings` (ripgrep's lowargs/hiargs split).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// dave: a node of the Dave peer-to-peer key-value store.
#[derive(Debug, Parser)]
#[command(name = "dave", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a new key file (64 bytes: seed ‖ public key, mode 0600) and print its public key.
    Keygen(KeygenArgs),
    /// Run a storage node until SIGINT or SIGTERM.
    Node(NodeArgs),
    /// Store records in the network through an edge node.
    Put(PutArgs),
    /// Fetch a record from the network through an edge node.
    Get(GetArgs),
    /// Start a local network of nodes on loopback, write and read records, print what happened.
    Demo(DemoArgs),
    /// Simulate a whole network on one thread with a virtual clock, reproducibly from a seed.
    Sim(dave::sim::SimArgs),
    /// Import a Go reference backup file into a new dave backup log, verifying every record.
    Import(ImportArgs),
    /// Print a backup log's live records as JSON lines (read-only; safe beside a running node).
    Export(ExportArgs),
    /// Summarise a backup log: records, live and dead bytes, damaged regions (read-only).
    Inspect(InspectArgs),
}

/// `dave import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The Go reference's backup file (read, never modified).
    #[arg(long, value_name = "GO_BACKUP")]
    pub reference: PathBuf,
    /// The dave backup log to create. It must not exist: import never writes into an existing
    /// log (a running node may hold it).
    #[arg(long, value_name = "LOG")]
    pub backup: PathBuf,
    /// Proof-of-work bits every imported record must carry (the reference's minimum is 20).
    #[arg(long, value_name = "BITS", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(0..=256))]
    pub min_work: u32,
}

/// `dave export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The dave backup log to read (opened read-only, no lock taken).
    #[arg(long, value_name = "LOG")]
    pub backup: PathBuf,
}

/// `dave inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The dave backup log to read (opened read-only, no lock taken).
    #[arg(long, value_name = "LOG")]
    pub backup: PathBuf,
}

/// How KEY and VALUE arguments are written on the command line.
#[derive(Debug, Args)]
pub struct EncodingArgs {
    /// KEY (and, for put, VALUE) are hexadecimal.
    #[arg(long, conflicts_with = "base64")]
    pub hex: bool,
    /// KEY (and, for put, VALUE) are standard base64 (with padding).
    #[arg(long)]
    pub base64: bool,
}

/// `dave keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Where to write the key file.
    #[arg(long, value_name = "FILE", default_value = "dave.key")]
    pub out: PathBuf,
    /// Replace an existing file.
    #[arg(long)]
    pub force: bool,
}

/// `dave node`. Every flag can also be set in the `--config` file; flags win.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// UDP address to listen on (port 0 picks a free port) [default: 0.0.0.0:1618].
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<String>,
    /// The node's key file (see `dave keygen`). Without it, a fresh identity each start.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// A bootstrap peer (repeatable). Host names are resolved, IPv4 preferred.
    #[arg(long = "edge", value_name = "HOST:PORT")]
    pub edges: Vec<String>,
    /// Backup log file: records survive restarts.
    #[arg(long, value_name = "FILE")]
    pub backup: Option<PathBuf>,
    /// When the backup is fsynced: every-write, every-ms:N or never [default: every-ms:50].
    #[arg(long, value_name = "POLICY")]
    pub sync: Option<String>,
    /// Byte budget of each of the 256 shards [default: 4194304].
    #[arg(long, value_name = "BYTES")]
    pub shard_capacity: Option<usize>,
    /// Proof-of-work bits required on received records [default: 20].
    #[arg(long, value_name = "BITS")]
    pub min_work: Option<u32>,
    /// Serve Prometheus metrics at http://ADDR:PORT/metrics.
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<String>,
    /// TOML file with the same settings (see README, "Configuration reference").
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Receiver threads, 0 = one per core [default: 0].
    #[arg(long, value_name = "N")]
    pub receivers: Option<usize>,
    /// Shard-owner threads, 1..=256 [default: 256].
    #[arg(long, value_name = "N")]
    pub owners: Option<usize>,
    /// Do not pin receiver threads to cores.
    #[arg(long)]
    pub no_pin: bool,
}

/// `dave put`.
#[derive(Debug, Args)]
pub struct PutArgs {
    /// The node to join through.
    #[arg(long, value_name = "HOST:PORT")]
    pub edge: String,
    /// Key file of the records' owner (see `dave keygen`).
    #[arg(long = "key", value_name = "FILE")]
    pub key_file: PathBuf,
    /// Proof-of-work bits to compute per record (each bit doubles the work).
    #[arg(long, value_name = "BITS", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(0..=64))]
    pub work: u32,
    /// Records to store, one JSON object per line: {"key": "..", "value": ".."}; binary keys
    /// and values as "key_hex"/"key_b64" and "value_hex"/"value_b64" (what `dave export`
    /// prints, whose "owner" must then be the key file's and whose "time_ms" is ignored).
    #[arg(long, value_name = "FILE.jsonl",
          conflicts_with_all = ["record_key", "value", "value_file", "hex", "base64"])]
    pub file: Option<PathBuf>,
    /// Take the value's bytes from this file (as they are, binary or not).
    #[arg(long, value_name = "FILE", conflicts_with = "value")]
    pub value_file: Option<PathBuf>,
    /// Encoding of KEY and VALUE.
    #[command(flatten)]
    pub encoding: EncodingArgs,
    /// How long to wait for the edge to answer, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 5_000)]
    pub timeout: u64,
    /// Write a v2 record (signed over every field, README "v2 records") with this sequence
    /// number: a higher seq replaces a lower one.
    #[arg(long, value_name = "N")]
    pub seq: Option<u64>,
    /// Compare-and-swap: write a v2 record only if a majority of its replicas hold seq N (the
    /// new seq is N + 1 unless --seq says otherwise); a lost swap exits with status 3 and the reason.
    #[arg(long, value_name = "N")]
    pub cas: Option<u64>,
    /// The record's key.
    #[arg(value_name = "KEY", required_unless_present = "file")]
    pub record_key: Option<String>,
    /// The record's value.
    #[arg(value_name = "VALUE", required_unless_present_any = ["file", "value_file"])]
    pub value: Option<String>,
}

/// `dave get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// The node to join through.
    #[arg(long, value_name = "HOST:PORT")]
    pub edge: String,
    /// The record owner's public key, 64 hex digits.
    #[arg(long, value_name = "PUBKEY_HEX")]
    pub owner: String,
    /// Give up after this many milliseconds (exit status 2).
    #[arg(long, value_name = "MS", default_value_t = 5_000)]
    pub timeout: u64,
    /// Longest time spent discovering peers beyond the edge before asking, in milliseconds
    /// (ends early once no new peer turns up).
    #[arg(long, value_name = "MS", default_value_t = 1_500)]
    pub wait_ms: u64,
    /// Peers asked at once (the closest known to the owner). The protocol's FANOUT is 3; a
    /// client may ask more to find a record its edge does not hold.
    #[arg(long, value_name = "N", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..=64))]
    pub fanout: u32,
    /// Accept only a v2 record (signed over every field): a v1 record, which anyone holding a
    /// signed record can re-cut at its key/value boundary, is never returned.
    #[arg(long)]
    pub strict: bool,
    /// Proof-of-work bits an answer must carry. The owner's signature is what makes an answer
    /// trustworthy; the work was the storing nodes' spam check.
    #[arg(long, value_name = "BITS", default_value_t = 0,
          value_parser = clap::value_parser!(u32).range(0..=256))]
    pub min_work: u32,
    /// Write the value's bytes to this new file instead of stdout (it must not exist).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Encoding of KEY.
    #[command(flatten)]
    pub encoding: EncodingArgs,
    /// The record's key.
    #[arg(value_name = "KEY")]
    pub key: String,
}

/// `dave demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Nodes to start (2..=32).
    #[arg(long, value_name = "N", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(2..=dave::demo::MAX_DEMO_NODES as u64))]
    pub nodes: u64,
}
