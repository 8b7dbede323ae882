//! Model test of the shard store (`dave::shard::store`): seeded random puts (new keys, newer,
//! older and byte-identical versions, same time with different content, reused work, colliding
//! hashes), gets, removes, clock advances and prunes, run against a reference model that keeps a
//! plain `Vec` and applies every rule by brute force (a full scan and a sort). After every step
//! the store and the model must hold the same records, use the same budget, and have refused,
//! replaced, evicted or expired exactly the same records (evictions in the same order).
//!
//! A failure names its seed and step; `DAVE_MODEL_SEEDS=N` runs more seeds.

use dave::keys::id_from_pubkey;
use dave::shard::store::Record;
use dave::shard::{
    RecordHasher, Refusal, RouteHasher, Store, StoreConfig, Version, compare_versions,
    record_cost_bytes,
};
use dave::wire::{Dat, DatFields};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Seeds per hasher unless `DAVE_MODEL_SEEDS` says otherwise.
const DEFAULT_SEEDS: u64 = 48;
/// Steps per seed: long enough to fill, evict, expire and refill the budget many times.
const STEPS_PER_SEED: usize = 3000;
/// Distinct owners and keys: few, so that versions of the same record meet often.
const OWNER_COUNT: usize = 6;
const KEY_COUNT: usize = 5;
/// Values up to this long, so one write may have to evict several records.
const MAX_VALUE_BYTES: usize = 400;

/// The reference model: the records in a `Vec`, every rule by brute force.
struct Model {
    config: StoreConfig,
    records: Vec<Record>,
    last_now_ms: i64,
}

/// What an accepted write does: the index of the held version, and the victims in eviction order.
type Decision = (Option<usize>, Vec<usize>);

impl Model {
    fn new(config: StoreConfig) -> Model {
        Model {
            config,
            records: Vec::new(),
            last_now_ms: i64::MIN,
        }
    }

    fn bytes_used(&self) -> usize {
        self.records
            .iter()
            .map(|r| record_cost_bytes(r.len()))
            .sum()
    }

    fn find(&self, pubkey: &[u8; 32], key: &[u8]) -> Option<usize> {
        self.records
            .iter()
            .position(|r| r.pubkey() == pubkey && r.key() == key)
    }

    /// The eviction rank (smaller goes first), straight from the rule: expired first, then
    /// `expiry + closeness * ttl/64`, then the last 4 work bytes (the generator keeps those
    /// unique, so the slot tie-break is never reached).
    fn rank<T: AsRef<[u8]>>(&self, dat: &Dat<T>, now_ms: i64) -> (bool, i128, u32) {
        let expiry_ms = dat.time_ms().saturating_add(self.config.ttl_ms);
        let closeness = (id_from_pubkey(dat.pubkey()) ^ self.config.node_id).leading_zeros();
        let priority =
            i128::from(expiry_ms) + i128::from(closeness) * i128::from(self.config.ttl_ms / 64);
        let work = dat.work();
        let tail = u32::from_le_bytes([work[28], work[29], work[30], work[31]]);
        (expiry_ms > now_ms, priority, tail)
    }

    fn decide(&self, dat: &Dat<&[u8]>, now_ms: i64) -> Result<Decision, Refusal> {
        let held = self.find(dat.pubkey(), dat.key());
        if let Some(h) = held {
            match compare_versions(dat, &self.records[h]) {
                Version::Newer => {}
                Version::Same => return Err(Refusal::Duplicate),
                Version::Older => return Err(Refusal::Older),
            }
        }
        let reused = self
            .records
            .iter()
            .enumerate()
            .any(|(i, r)| Some(i) != held && r.work() == dat.work());
        if reused {
            return Err(Refusal::WorkReused);
        }
        let held_cost = held.map_or(0, |h| record_cost_bytes(self.records[h].len()));
        let used_after = self.bytes_used() - held_cost + record_cost_bytes(dat.len());
        if used_after <= self.config.capacity_bytes {
            return Ok((held, Vec::new()));
        }
        let need = used_after - self.config.capacity_bytes;
        let candidate = self.rank(dat, now_ms);
        let mut others: Vec<usize> = (0..self.records.len())
            .filter(|&i| Some(i) != held)
            .collect();
        others.sort_by_key(|&i| self.rank(&self.records[i], now_ms));
        let mut victims = Vec::new();
        let mut freed = 0;
        for i in others {
            if self.rank(&self.records[i], now_ms) >= candidate {
                return Err(Refusal::TooLowPriority);
            }
            victims.push(i);
            freed += record_cost_bytes(self.records[i].len());
            if freed >= need {
                return Ok((held, victims));
            }
        }
        Err(Refusal::TooLowPriority)
    }

    fn precheck(&self, dat: &Dat<&[u8]>) -> Result<(), Refusal> {
        self.decide(dat, self.last_now_ms).map(|_| ())
    }

    fn insert(
        &mut self,
        dat: Record,
        now_ms: i64,
    ) -> Result<(Option<Record>, Vec<Record>), Refusal> {
        self.last_now_ms = now_ms;
        let (held, victims) = self.decide(&dat.as_view(), now_ms)?;
        let replaced = held.map(|h| self.records[h].clone());
        let evicted: Vec<Record> = victims.iter().map(|&i| self.records[i].clone()).collect();
        let mut gone: Vec<usize> = held.into_iter().chain(victims).collect();
        gone.sort_unstable();
        for i in gone.into_iter().rev() {
            self.records.swap_remove(i);
        }
        self.records.push(dat);
        Ok((replaced, evicted))
    }

    fn remove(&mut self, pubkey: &[u8; 32], key: &[u8]) -> Option<Record> {
        let i = self.find(pubkey, key)?;
        Some(self.records.swap_remove(i))
    }

    fn tick(&mut self, now_ms: i64) -> Vec<Record> {
        self.last_now_ms = now_ms;
        let ttl_ms = self.config.ttl_ms;
        let (expired, kept) = self
            .records
            .drain(..)
            .partition(|r| r.time_ms().saturating_add(ttl_ms) <= now_ms);
        self.records = kept;
        expired
    }
}

/// Every identity collides in 4 hash values, and every work hash in 2: the tables hold long
/// probe chains and must still tell records apart by their bytes.
struct Colliding;

impl RecordHasher for Colliding {
    fn record_hash(pubkey: &[u8; 32], key: &[u8]) -> u64 {
        u64::from(pubkey[0] ^ key.first().copied().unwrap_or(0)) & 3
    }
    fn work_hash(work: &[u8; 32]) -> u64 {
        u64::from(work[0] & 1)
    }
}

/// Makes the records of one run.
struct Generator {
    rng: StdRng,
    owners: Vec<[u8; 32]>,
    keys: Vec<Vec<u8>>,
    /// Counter in the last 4 work bytes: every generated work differs there.
    next_work_tail: u32,
    /// Works handed out before (for reuse).
    works: Vec<[u8; 32]>,
}

impl Generator {
    fn new(seed: u64, node_id: u64) -> Generator {
        let mut rng = StdRng::seed_from_u64(seed);
        // Owners at chosen closeness to the node: itself, very close, middling, far, random.
        let distances = [0, 1, 1 << 12, 1 << 40, u64::MAX, rng.r#gen()];
        let owners = distances
            .iter()
            .take(OWNER_COUNT)
            .map(|&d: &u64| {
                let mut pubkey = [0u8; 32];
                rng.fill(&mut pubkey[8..]);
                pubkey[..8].copy_from_slice(&(node_id ^ d).to_le_bytes());
                pubkey
            })
            .collect();
        let keys = (0..KEY_COUNT)
            .map(|i| {
                let len = [0, 1, 3, 16, 64][i % 5];
                (0..len).map(|_| rng.r#gen()).collect()
            })
            .collect();
        Generator {
            rng,
            owners,
            keys,
            next_work_tail: 1,
            works: Vec::new(),
        }
    }

    fn fresh_work(&mut self) -> [u8; 32] {
        let mut work = [0u8; 32];
        self.rng.fill(&mut work[..28]);
        work[28..].copy_from_slice(&self.next_work_tail.to_le_bytes());
        self.next_work_tail += 1;
        self.works.push(work);
        work
    }

    fn used_work(&mut self) -> [u8; 32] {
        if self.works.is_empty() {
            return self.fresh_work();
        }
        let i = self.rng.gen_range(0..self.works.len());
        self.works[i]
    }

    fn record(&mut self, pubkey: [u8; 32], key: &[u8], time_ms: i64, work: [u8; 32]) -> Record {
        let value_len = self.rng.gen_range(0..=MAX_VALUE_BYTES);
        let value: Vec<u8> = (0..value_len).map(|_| self.rng.r#gen()).collect();
        let mut salt = [0u8; 16];
        self.rng.fill(&mut salt[..]);
        DatFields {
            time_ms,
            salt,
            work,
            sig: [0x5a; 64],
            pubkey,
            key,
            value: &value,
        }
        .to_dat()
    }

    fn identity(&mut self) -> ([u8; 32], Vec<u8>) {
        let owner = self.owners[self.rng.gen_range(0..self.owners.len())];
        let key = self.keys[self.rng.gen_range(0..self.keys.len())].clone();
        (owner, key)
    }
}

/// How often each outcome happened, so a run cannot pass by never reaching a rule.
#[derive(Debug, Default)]
struct Tally {
    stored: u64,
    replaced: u64,
    evicted: u64,
    multi_evictions: u64,
    duplicate: u64,
    older: u64,
    work_reused: u64,
    too_low_priority: u64,
    expired: u64,
}

impl Tally {
    fn count(&mut self, outcome: &Result<(Option<Record>, Vec<Record>), Refusal>) {
        match outcome {
            Ok((replaced, evicted)) => {
                self.stored += 1;
                self.replaced += replaced.is_some() as u64;
                self.evicted += evicted.len() as u64;
                self.multi_evictions += (evicted.len() > 1) as u64;
            }
            Err(Refusal::Duplicate) => self.duplicate += 1,
            Err(Refusal::Older) => self.older += 1,
            Err(Refusal::WorkReused) => self.work_reused += 1,
            Err(Refusal::TooLowPriority) => self.too_low_priority += 1,
        }
    }

    fn assert_every_rule_reached(&self) {
        let counts = [
            self.stored,
            self.replaced,
            self.evicted,
            self.multi_evictions,
            self.duplicate,
            self.older,
            self.work_reused,
            self.too_low_priority,
            self.expired,
        ];
        assert!(
            counts.iter().all(|&c| c > 0),
            "a rule was never reached: {self:?}"
        );
    }
}

fn sorted(mut records: Vec<Record>) -> Vec<Record> {
    records.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    records
}

fn check_same<H: RecordHasher>(store: &Store<H>, model: &Model, at: &str) {
    assert_eq!(store.len(), model.records.len(), "{at}: len");
    assert_eq!(store.bytes_used(), model.bytes_used(), "{at}: bytes_used");
    assert!(
        store.bytes_used() <= model.config.capacity_bytes,
        "{at}: over budget"
    );
    for r in &model.records {
        assert_eq!(
            store.get(r.pubkey(), r.key()),
            Some(r.as_view()),
            "{at}: get"
        );
    }
    let held = sorted(store.iter().map(|r| r.to_boxed()).collect());
    assert_eq!(held, sorted(model.records.clone()), "{at}: records");
}

fn run<H: RecordHasher>(seed: u64, tally: &mut Tally) {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    let ttl_ms: i64 = [64, 6400, 100_000, 365 * 24 * 3600 * 1000][rng.gen_range(0..4)];
    let node_id: u64 = rng.r#gen();
    // From "holds nothing" to "rarely full": most runs evict often.
    let capacity_bytes = rng.gen_range(0..14) * record_cost_bytes(300);
    let config = StoreConfig {
        capacity_bytes,
        ttl_ms,
        node_id,
    };
    let mut store: Store<H> = Store::with_hasher(config);
    let mut model = Model::new(config);
    let mut generator = Generator::new(seed, node_id);
    let mut now_ms: i64 = 1_700_000_000_000;

    for step in 0..STEPS_PER_SEED {
        let at = format!("seed {seed} step {step} (ttl {ttl_ms}, capacity {capacity_bytes})");
        let choice = rng.gen_range(0..100);
        let put = match choice {
            // A new version of some identity, at a time from long expired to slightly ahead.
            0..=34 => {
                let (owner, key) = generator.identity();
                let time_ms = now_ms - rng.gen_range(-ttl_ms / 8..=ttl_ms * 2);
                let work = generator.fresh_work();
                Some(generator.record(owner, &key, time_ms, work))
            }
            // Newer, same-time or older versions of a held record; sometimes keeping its work.
            35..=54 if !model.records.is_empty() => {
                let held = model.records[rng.gen_range(0..model.records.len())].clone();
                let delta_ms = [1, 0, 0, -1, ttl_ms / 3][rng.gen_range(0..5)];
                let work = if rng.gen_bool(0.2) {
                    *held.work()
                } else {
                    generator.fresh_work()
                };
                let time_ms = held.time_ms().saturating_add(delta_ms);
                Some(generator.record(*held.pubkey(), held.key(), time_ms, work))
            }
            // A byte-identical duplicate.
            55..=59 if !model.records.is_empty() => {
                Some(model.records[rng.gen_range(0..model.records.len())].clone())
            }
            // Work handed out before, on some identity (refused unless its holder is gone).
            60..=69 => {
                let (owner, key) = generator.identity();
                let work = if !model.records.is_empty() && rng.gen_bool(0.5) {
                    *model.records[rng.gen_range(0..model.records.len())].work()
                } else {
                    generator.used_work()
                };
                Some(generator.record(owner, &key, now_ms, work))
            }
            _ => None,
        };
        if let Some(dat) = put {
            let view = dat.as_view();
            assert_eq!(
                store.precheck(&view),
                model.precheck(&view),
                "{at}: precheck"
            );
            let expected = model.insert(dat.clone(), now_ms);
            let got = store
                .insert(dat, now_ms)
                .map(|inserted| (inserted.replaced, inserted.evicted));
            assert_eq!(got, expected, "{at}: insert");
            tally.count(&expected);
        } else {
            match choice {
                70..=79 => {
                    let (owner, key) = generator.identity();
                    assert_eq!(
                        store.get(&owner, &key),
                        model.find(&owner, &key).map(|i| model.records[i].as_view()),
                        "{at}: get"
                    );
                }
                80..=84 => {
                    let (owner, key) = generator.identity();
                    assert_eq!(
                        store.remove(&owner, &key),
                        model.remove(&owner, &key),
                        "{at}: remove"
                    );
                }
                85..=92 => now_ms += rng.gen_range(0..=ttl_ms / 2),
                _ => {
                    let report = store.tick(now_ms);
                    let freed: usize = report
                        .expired
                        .iter()
                        .map(|r| record_cost_bytes(r.len()))
                        .sum();
                    assert_eq!(report.bytes_freed, freed, "{at}: bytes_freed");
                    let expected = model.tick(now_ms);
                    tally.expired += expected.len() as u64;
                    assert_eq!(sorted(report.expired), sorted(expected), "{at}: tick");
                }
            }
        }
        check_same(&store, &model, &at);
    }
}

fn seeds() -> u64 {
    std::env::var("DAVE_MODEL_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEEDS)
}

#[test]
fn store_matches_model_with_route_hasher() {
    let mut tally = Tally::default();
    for seed in 0..seeds() {
        run::<RouteHasher>(seed, &mut tally);
    }
    tally.assert_every_rule_reached();
}

#[test]
fn store_matches_model_with_colliding_hasher() {
    let mut tally = Tally::default();
    for seed in 0..seeds() {
        run::<Colliding>(1_000_000 + seed, &mut tally);
    }
    tally.assert_every_rule_reached();
    eprintln!("{tally:?}");
}
