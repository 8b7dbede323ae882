//! The node's API for v2 records (issue 16): puts that write the v2 format by default (and v1
//! where asked, for values only v1 can carry, or for v1-only peers), compare-and-swap puts, and
//! gets that can require the v2 format (`strict`), so a re-cut v1 record never reaches a caller
//! that asked for v2.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Duration;

use crossbeam_channel::{RecvTimeoutError, bounded};

use crate::backup::SyncPolicy;
use crate::keys::Keypair;
use crate::limits::MAX_KEY_LEN;
use crate::pow::{self, SearchOutcome, WorkKind};
use crate::shard::core::{GetOutcome, Record};
use crate::shard::core2::{Get2Outcome, LocalPut2, Put2Error, Put2Report};
use crate::shard::shard_index;
use crate::time::unix_now_ms;
use crate::wire::Features;
use crate::wire::record2::{MAX_KEY_VALUE_LEN2, Record2};

use super::handoff::OwnerMsg;
use super::{GetError, Node, PUT_TIME_BACKDATE_MS, PutError, PutReport};

/// Which record format a put writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecordFormat {
    /// v2 to the RECORD_V2 peers; also v1 when a value is too long for v2 (key + value over
    /// 1194 bytes), when this node does not speak RECORD_V2, or when any of the `fanout` peers
    /// closest to the owner does not (so v1-only peers still receive the record).
    #[default]
    Auto,
    /// v1 only (the Dave protocol record).
    V1,
    /// v2 only.
    V2,
}

/// How to put.
#[derive(Debug, Clone, Default)]
pub struct PutOptions {
    /// The format.
    pub format: RecordFormat,
    /// The v2 sequence number; default: `cas + 1` under CAS, else the record's time in Unix ms
    /// (so later puts replace earlier ones, as v1's time rule does).
    pub seq: Option<u64>,
    /// Compare-and-swap: succeed only if a majority of the replicas hold exactly this seq (or
    /// nothing) and take the record.
    pub cas: Option<u64>,
    /// Proof-of-work bits (default: the node's `min_work_bits`).
    pub work_bits: Option<u32>,
    /// Owner key (default: the node's).
    pub owner: Option<Keypair>,
}

/// A v2 put that ended well.
#[derive(Debug)]
pub struct Put2Done {
    /// The record.
    pub record: Record2,
    /// Where it went and how many replicas hold it.
    pub report: Put2Report,
}

/// What [`Node::put_with`] wrote.
#[derive(Debug, Default)]
pub struct PutOutcome {
    /// The v2 record, if one was written.
    pub v2: Option<Put2Done>,
    /// The v1 record, if one was written.
    pub v1: Option<PutReport>,
}

/// A record of either format, as [`Node::get_with`] returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnyRecord {
    /// A v1 record (its key/value boundary is not signed).
    V1(Record),
    /// A v2 record.
    V2(Record2),
}

impl AnyRecord {
    /// The key.
    pub fn key(&self) -> &[u8] {
        match self {
            AnyRecord::V1(d) => d.key(),
            AnyRecord::V2(d) => d.key(),
        }
    }

    /// The value.
    pub fn value(&self) -> &[u8] {
        match self {
            AnyRecord::V1(d) => d.value(),
            AnyRecord::V2(d) => d.value(),
        }
    }

    /// The owner's public key.
    pub fn pubkey(&self) -> &[u8; 32] {
        match self {
            AnyRecord::V1(d) => d.pubkey(),
            AnyRecord::V2(d) => d.pubkey(),
        }
    }

    /// Creation time, Unix ms.
    pub fn time_ms(&self) -> i64 {
        match self {
            AnyRecord::V1(d) => d.time_ms(),
            AnyRecord::V2(d) => d.time_ms(),
        }
    }

    /// The v2 sequence number (`None` for v1).
    pub fn seq(&self) -> Option<u64> {
        match self {
            AnyRecord::V1(_) => None,
            AnyRecord::V2(d) => Some(d.seq()),
        }
    }
}

/// How to get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GetOptions {
    /// Only a v2 record will do: a v1 record (which could be a re-cut) is never returned.
    pub strict: bool,
}

impl Node {
    fn speaks_v2(&self) -> bool {
        self.shared.config.extensions.contains(Features::RECORD_V2)
    }

    /// Whether some of the `fanout` active peers closest to `owner_id` do not speak RECORD_V2.
    fn v1_peers_near(&self, owner_id: u64) -> bool {
        let snapshot = Arc::clone(&self.shared.snapshot.read());
        snapshot
            .closest(owner_id, self.shared.config.fanout, None)
            .iter()
            .any(|p| !p.speaks(Features::RECORD_V2))
    }

    /// Puts under `options` (see [`RecordFormat`] and [`PutOptions`]). A CAS put returns once a
    /// majority of the replicas answered (or its deadline passed): an error names why it lost.
    pub fn put_with(
        &self,
        key: &[u8],
        value: &[u8],
        options: &PutOptions,
    ) -> Result<PutOutcome, PutError> {
        let owner = options
            .owner
            .clone()
            .unwrap_or_else(|| self.keypair.clone());
        let work_bits = options
            .work_bits
            .unwrap_or(self.shared.config.min_work_bits);
        let fits_v2 = key.len() <= MAX_KEY_LEN && key.len() + value.len() <= MAX_KEY_VALUE_LEN2;
        let (v2, v1) = match options.format {
            RecordFormat::V1 => (false, true),
            RecordFormat::V2 => (true, false),
            RecordFormat::Auto => {
                let v2 = fits_v2 && self.speaks_v2();
                let v1 = !v2 || self.v1_peers_near(owner.id());
                (v2, v1)
            }
        };
        if options.cas.is_some() && !v2 {
            return Err(PutError::NeedsV2);
        }
        if v2 && !fits_v2 {
            return Err(PutError::TooLong);
        }
        if v2 && !self.speaks_v2() {
            return Err(PutError::NeedsV2);
        }
        let mut outcome = PutOutcome::default();
        if v2 {
            let time_ms = unix_now_ms() - PUT_TIME_BACKDATE_MS;
            let seq = options
                .seq
                .or(options.cas.map(|c| c.saturating_add(1)))
                .unwrap_or(time_ms.max(0) as u64);
            let load = pow::load2_hash(&owner.public(), key, value, time_ms, seq);
            let (salt, work) = match self.pow.search_kind(
                WorkKind::V2,
                load,
                work_bits,
                Arc::new(AtomicBool::new(false)),
                Arc::new(AtomicU64::new(0)),
            ) {
                SearchOutcome::Found { salt, work } => (salt, work),
                SearchOutcome::Cancelled => return Err(PutError::Shutdown),
            };
            let record = pow::sign_dat2(&owner, key, value, time_ms, seq, salt, work);
            let commit = pow::sign_commit2(&owner, &work);
            let report = self.put_dat2(record.to_boxed(), options.cas, commit)?;
            outcome.v2 = Some(Put2Done { record, report });
        }
        if v1 {
            outcome.v1 = Some(self.put_as(&owner, key, value, work_bits)?);
        }
        Ok(outcome)
    }

    /// Stores and replicates an already-made v2 record; with `expect_seq`, as a compare-and-swap
    /// (`commit` is the owner's commit signature, sent to the minority if it wins; see
    /// [`crate::pow::sign_commit2`]).
    pub fn put_dat2(
        &self,
        record: Record2,
        expect_seq: Option<u64>,
        commit: [u8; 64],
    ) -> Result<Put2Report, PutError> {
        let (reply, answer) = bounded(1);
        let owner = self.owner_of(record.pubkey(), record.key());
        let via = self.lookup_view(record.owner_id());
        let put = LocalPut2 {
            record,
            expect_seq,
            commit,
            waiter: reply,
        };
        self.shared.owners[owner]
            .send(OwnerMsg::LocalPut2 { put, via })
            .map_err(|_| PutError::Shutdown)?;
        let report = answer
            .recv()
            .map_err(|_| PutError::Shutdown)?
            .map_err(PutError::Rejected)?;
        if let Some(backup) = &self.backup
            && self.shared.config.sync_policy == SyncPolicy::EveryWrite
        {
            backup.handle().sync().map_err(|_| PutError::Shutdown)?;
        }
        Ok(report)
    }

    /// The v2 record of (owner, key): a replica holding it answers at once; otherwise the
    /// replicas among the RECORD_V2 peers are asked and the highest valid seq wins.
    pub fn get2(
        &self,
        owner_pubkey: &[u8; 32],
        key: &[u8],
        timeout: Duration,
    ) -> Result<Record2, GetError> {
        if key.len() > MAX_KEY_LEN {
            return Err(GetError::NotFound);
        }
        let via = self.lookup_view(crate::keys::id_from_pubkey(owner_pubkey));
        let answer = self.start_get(owner_pubkey, key, timeout, via, OwnerMsg::LocalGet2)?;
        match answer.recv_timeout(timeout + Duration::from_millis(500)) {
            Ok(Get2Outcome::Found(dat)) => Ok(dat),
            Ok(Get2Outcome::NotFound) => Err(GetError::NotFound),
            Ok(Get2Outcome::TimedOut) | Err(RecvTimeoutError::Timeout) => Err(GetError::TimedOut),
            Err(RecvTimeoutError::Disconnected) => Err(GetError::Shutdown),
        }
    }

    /// The record of (owner, key) in either format: a v2 record if one is found, else (unless
    /// `strict`) the v1 record. Both lookups run at once.
    pub fn get_with(
        &self,
        owner_pubkey: &[u8; 32],
        key: &[u8],
        timeout: Duration,
        options: GetOptions,
    ) -> Result<AnyRecord, GetError> {
        if key.len() > MAX_KEY_LEN {
            return Err(GetError::NotFound);
        }
        // One lookup serves both formats.
        let via = self.lookup_view(crate::keys::id_from_pubkey(owner_pubkey));
        let v2 = if self.speaks_v2() {
            Some(self.start_get(owner_pubkey, key, timeout, via.clone(), OwnerMsg::LocalGet2)?)
        } else {
            None
        };
        if options.strict && v2.is_none() {
            return Err(GetError::NotFound);
        }
        let v1 = if options.strict {
            None
        } else {
            Some(self.start_get(owner_pubkey, key, timeout, via, OwnerMsg::LocalGet)?)
        };
        let mut v2_error = GetError::NotFound;
        if let Some(answer) = v2 {
            match answer.recv_timeout(timeout + Duration::from_millis(500)) {
                Ok(Get2Outcome::Found(dat)) => return Ok(AnyRecord::V2(dat)),
                Ok(Get2Outcome::NotFound) => {}
                Ok(Get2Outcome::TimedOut) | Err(RecvTimeoutError::Timeout) => {
                    v2_error = GetError::TimedOut;
                }
                Err(RecvTimeoutError::Disconnected) => return Err(GetError::Shutdown),
            }
        }
        let Some(answer) = v1 else {
            return Err(v2_error);
        };
        match answer.recv_timeout(timeout + Duration::from_millis(500)) {
            Ok(GetOutcome::Found(dat)) => Ok(AnyRecord::V1(dat)),
            Ok(GetOutcome::NotFound) => Err(v2_error),
            Ok(GetOutcome::TimedOut) | Err(RecvTimeoutError::Timeout) => Err(GetError::TimedOut),
            Err(RecvTimeoutError::Disconnected) => Err(GetError::Shutdown),
        }
    }

    /// The v2 record of (owner, key) if this node holds it (no network).
    pub fn get_local2(&self, owner_pubkey: &[u8; 32], key: &[u8]) -> Option<Record2> {
        let store = self.shared.stores2[shard_index(owner_pubkey, key)].read();
        store.get(owner_pubkey, key).map(|d| d.to_boxed())
    }

    /// The v2 counters (summed over the node's threads).
    pub fn stats2(&self) -> crate::shard::core2::Stats2 {
        let mut stats = crate::shard::core2::Stats2::default();
        stats.add(&self.shared.counters2);
        stats
    }
}

impl From<Put2Error> for PutError {
    fn from(e: Put2Error) -> PutError {
        PutError::Rejected(e)
    }
}
