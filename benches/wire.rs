//! Codec benchmark: dave's wire format against protobuf (prost) carrying the same fields.
//!
//! One group per (direction, message): `encode/put`, `decode/put`, … with a `dave` and a `prost`
//! function in each, so both run in the same process on the same inputs. The prost messages are
//! written by hand with `#[derive(prost::Message)]` (no protoc); they carry exactly dave's fields
//! with the tightest protobuf types (fixed-size `bytes`, `sfixed64` time) and no envelope, which
//! favours prost.
//!
//! Fairness: prost's decode copies every field into owned `Vec`s, so dave's decode is
//! `Message::parse` *plus* materialising every field (`Dat::fields` copies the fixed-size ones,
//! `PongRepr` and `GetRepr` are copies already) and then reading each field through
//! `black_box`, exactly as the prost side reads its decoded struct. Encodes write into a buffer reused across iterations (`[u8; 1424]` for
//! dave, a cleared `Vec` with capacity for prost). Throughput is in dave wire bytes per second.
//! Times are the benchmarking thread's CPU time (see `ThreadCpuTime`), not wall time.
//!
//! Run: `cargo bench --bench wire -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;
use std::net::SocketAddr;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dave::limits::{DAT_MESSAGE_HEADER_LEN, MAX_PACKET_LEN};
use dave::wire::record2::{Dat2Fields, Message2, PUT2_HEADER_LEN};
use dave::wire::{DatFields, GetRepr, Message, Op, PongRepr, addr_to_wire, emit_dat_message};
use prost::Message as _;

#[path = "common/thread_cpu.rs"]
mod thread_cpu;
use thread_cpu::ThreadCpuTime;

/// A dat as protobuf: the same seven fields.
#[derive(Clone, PartialEq, prost::Message)]
struct DatPb {
    #[prost(sfixed64, tag = "1")]
    time_ms: i64,
    #[prost(bytes = "vec", tag = "2")]
    salt: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    work: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    sig: Vec<u8>,
    #[prost(bytes = "vec", tag = "5")]
    pubkey: Vec<u8>,
    #[prost(bytes = "vec", tag = "6")]
    key: Vec<u8>,
    #[prost(bytes = "vec", tag = "7")]
    value: Vec<u8>,
}

/// A GET as protobuf.
#[derive(Clone, PartialEq, prost::Message)]
struct GetPb {
    #[prost(bytes = "vec", tag = "1")]
    pubkey: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    key: Vec<u8>,
}

/// A PONG as protobuf: addresses as 18-byte blobs, like the wire.
#[derive(Clone, PartialEq, prost::Message)]
struct PongPb {
    #[prost(bytes = "vec", repeated, tag = "1")]
    addrs: Vec<Vec<u8>>,
    #[prost(bytes = "vec", tag = "2")]
    challenge: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    salt: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    pubkey: Vec<u8>,
    #[prost(bytes = "vec", tag = "5")]
    sig: Vec<u8>,
}

/// The dave and prost forms of one dat.
struct DatCase {
    name: &'static str,
    key: Vec<u8>,
    value: Vec<u8>,
}

impl DatCase {
    fn fields(&self) -> DatFields<'_> {
        DatFields {
            time_ms: 1_733_097_600_000,
            salt: [0x20; 16],
            work: [0x00; 32],
            sig: [0xc8; 64],
            pubkey: [0x8a; 32],
            key: &self.key,
            value: &self.value,
        }
    }

    /// The same record in the v2 format (seq added).
    fn fields2(&self) -> Dat2Fields<'_> {
        let f = self.fields();
        Dat2Fields {
            time_ms: f.time_ms,
            seq: 7,
            salt: f.salt,
            work: f.work,
            sig: f.sig,
            pubkey: f.pubkey,
            key: f.key,
            value: f.value,
        }
    }

    fn pb(&self) -> DatPb {
        let f = self.fields();
        DatPb {
            time_ms: f.time_ms,
            salt: f.salt.to_vec(),
            work: f.work.to_vec(),
            sig: f.sig.to_vec(),
            pubkey: f.pubkey.to_vec(),
            key: self.key.clone(),
            value: self.value.clone(),
        }
    }
}

/// Reads every field of a decoded dat (the copies `Dat::fields` made, and the borrowed key and
/// value), as a receiver would.
#[inline(always)]
fn touch_dat(f: &DatFields<'_>) {
    black_box(f.time_ms);
    black_box(&f.salt);
    black_box(&f.work);
    black_box(&f.sig);
    black_box(&f.pubkey);
    black_box(f.key);
    black_box(f.value);
}

/// The same for prost's decoded dat.
#[inline(always)]
fn touch_dat_pb(f: &DatPb) {
    black_box(f.time_ms);
    black_box(&f.salt);
    black_box(&f.work);
    black_box(&f.sig);
    black_box(&f.pubkey);
    black_box(&f.key);
    black_box(&f.value);
}

/// Reads every field of a decoded dat2.
#[inline(always)]
fn touch_dat2(f: &Dat2Fields<'_>) {
    black_box(f.time_ms);
    black_box(f.seq);
    black_box(&f.salt);
    black_box(&f.work);
    black_box(&f.sig);
    black_box(&f.pubkey);
    black_box(f.key);
    black_box(f.value);
}

/// A PUT2 straight from fields, like [`emit_put_from_fields`].
#[inline]
fn emit_put2_from_fields(fields: &Dat2Fields<'_>, buf: &mut [u8]) -> usize {
    let dat_len = fields.emit(&mut buf[PUT2_HEADER_LEN..]);
    buf[0] = 0x18;
    buf[1..3].copy_from_slice(&(dat_len as u16).to_le_bytes());
    PUT2_HEADER_LEN + dat_len
}

/// A PUT straight from fields: the dat into `buf[3..]`, then the 3-byte header.
#[inline]
fn emit_put_from_fields(fields: &DatFields<'_>, buf: &mut [u8]) -> usize {
    let dat_len = fields.emit(&mut buf[DAT_MESSAGE_HEADER_LEN..]);
    buf[0] = Op::Put as u8;
    buf[1..3].copy_from_slice(&(dat_len as u16).to_le_bytes());
    DAT_MESSAGE_HEADER_LEN + dat_len
}

fn bench_put(c: &mut Criterion<ThreadCpuTime>) {
    let cases = [
        DatCase {
            name: "put",
            key: b"hello".to_vec(),
            value: b"world".to_vec(),
        },
        DatCase {
            name: "put_1k",
            key: vec![b'k'; 32],
            value: vec![b'v'; 1000],
        },
    ];
    for case in &cases {
        let fields = case.fields();
        let pb = case.pb();
        let stored = fields.to_dat();
        let mut wire = [0u8; MAX_PACKET_LEN];
        let wire_len = emit_put_from_fields(&fields, &mut wire);
        let wire = wire[..wire_len].to_vec();
        let pb_bytes = pb.encode_to_vec();
        assert_eq!(DatPb::decode(&pb_bytes[..]).unwrap(), pb);
        let fields2 = case.fields2();
        let mut wire2 = [0u8; MAX_PACKET_LEN];
        let wire2_len = emit_put2_from_fields(&fields2, &mut wire2);
        let wire2 = wire2[..wire2_len].to_vec();
        assert!(matches!(Message2::parse(&wire2), Ok(Message2::Put2(_))));

        let mut group = c.benchmark_group(format!("encode/{}", case.name));
        group.throughput(Throughput::Bytes(wire_len as u64));
        let mut buf = [0u8; MAX_PACKET_LEN];
        group.bench_function("dave", |b| {
            b.iter(|| {
                let n = emit_put_from_fields(black_box(&fields), &mut buf);
                black_box(&buf[..n]);
            })
        });
        // Re-sending a stored record: its wire bytes are kept, so this is a header and a copy.
        group.bench_function("dave_stored", |b| {
            b.iter(|| {
                let n = emit_dat_message(Op::Put, black_box(stored.as_bytes()), &mut buf);
                black_box(&buf[..n]);
            })
        });
        // The v2 record (issue 16) beside v1, same key and value, in the same group.
        group.bench_function("dave_v2", |b| {
            b.iter(|| {
                let n = emit_put2_from_fields(black_box(&fields2), &mut buf);
                black_box(&buf[..n]);
            })
        });
        let mut out = Vec::with_capacity(2 * MAX_PACKET_LEN);
        group.bench_function("prost", |b| {
            b.iter(|| {
                out.clear();
                black_box(&pb).encode(&mut out).unwrap();
                black_box(&out);
            })
        });
        group.finish();

        let mut group = c.benchmark_group(format!("decode/{}", case.name));
        group.throughput(Throughput::Bytes(wire_len as u64));
        group.bench_function("dave", |b| {
            b.iter(|| match Message::parse(black_box(&wire)) {
                Ok(Message::Put(dat)) => touch_dat(&dat.fields()),
                _ => unreachable!(),
            })
        });
        group.bench_function("dave_v2", |b| {
            b.iter(|| match Message2::parse(black_box(&wire2)) {
                Ok(Message2::Put2(dat)) => touch_dat2(&dat.fields()),
                _ => unreachable!(),
            })
        });
        group.bench_function("prost", |b| {
            b.iter(|| touch_dat_pb(&DatPb::decode(black_box(&pb_bytes[..])).unwrap()))
        });
        group.finish();
    }
}

fn bench_get(c: &mut Criterion<ThreadCpuTime>) {
    let repr = GetRepr {
        pubkey: &[0x8a; 32],
        key: b"hello",
    };
    let pb = GetPb {
        pubkey: repr.pubkey.to_vec(),
        key: repr.key.to_vec(),
    };
    let mut wire = [0u8; MAX_PACKET_LEN];
    let wire_len = repr.emit(&mut wire);
    let wire = wire[..wire_len].to_vec();
    let pb_bytes = pb.encode_to_vec();

    let mut group = c.benchmark_group("encode/get");
    group.throughput(Throughput::Bytes(wire_len as u64));
    let mut buf = [0u8; MAX_PACKET_LEN];
    group.bench_function("dave", |b| {
        b.iter(|| {
            let n = black_box(&repr).emit(&mut buf);
            black_box(&buf[..n]);
        })
    });
    let mut out = Vec::with_capacity(MAX_PACKET_LEN);
    group.bench_function("prost", |b| {
        b.iter(|| {
            out.clear();
            black_box(&pb).encode(&mut out).unwrap();
            black_box(&out);
        })
    });
    group.finish();

    let mut group = c.benchmark_group("decode/get");
    group.throughput(Throughput::Bytes(wire_len as u64));
    group.bench_function("dave", |b| {
        b.iter(|| match Message::parse(black_box(&wire)) {
            Ok(Message::Get(get)) => {
                black_box(get.pubkey);
                black_box(get.key);
            }
            _ => unreachable!(),
        })
    });
    group.bench_function("prost", |b| {
        b.iter(|| {
            let get = GetPb::decode(black_box(&pb_bytes[..])).unwrap();
            black_box(&get.pubkey);
            black_box(&get.key);
        })
    });
    group.finish();
}

fn bench_pong(c: &mut Criterion<ThreadCpuTime>) {
    // A full PONG: five addresses (NPEER_LIMIT), mixed IPv4 and IPv6.
    let addrs: Vec<SocketAddr> = [
        "127.0.0.1:40001",
        "[2001:db8::1]:40002",
        "192.0.2.7:1234",
        "[2001:db8::42]:40003",
        "198.51.100.9:40004",
    ]
    .iter()
    .map(|a| a.parse().unwrap())
    .collect();
    let challenge = [1u8, 2, 3, 4, 5, 6, 7, 8];
    let salt = [0x10u8; 16];
    let mut repr = PongRepr {
        addr_count: addrs.len(),
        addrs: [[0; 18]; 5],
        challenge,
        salt,
        pubkey: [0x8a; 32],
        sig: [0x9a; 64],
    };
    for (slot, addr) in repr.addrs.iter_mut().zip(&addrs) {
        *slot = addr_to_wire(*addr);
    }
    let pb = PongPb {
        addrs: repr.addrs().iter().map(|a| a.to_vec()).collect(),
        challenge: challenge.to_vec(),
        salt: salt.to_vec(),
        pubkey: repr.pubkey.to_vec(),
        sig: repr.sig.to_vec(),
    };
    let mut wire = [0u8; MAX_PACKET_LEN];
    let wire_len = repr.emit(&mut wire);
    let wire = wire[..wire_len].to_vec();
    let pb_bytes = pb.encode_to_vec();

    let mut group = c.benchmark_group("encode/pong");
    group.throughput(Throughput::Bytes(wire_len as u64));
    let mut buf = [0u8; MAX_PACKET_LEN];
    group.bench_function("dave", |b| {
        b.iter(|| {
            let n = black_box(&repr).emit(&mut buf);
            black_box(&buf[..n]);
        })
    });
    let mut out = Vec::with_capacity(MAX_PACKET_LEN);
    group.bench_function("prost", |b| {
        b.iter(|| {
            out.clear();
            black_box(&pb).encode(&mut out).unwrap();
            black_box(&out);
        })
    });
    group.finish();

    let mut group = c.benchmark_group("decode/pong");
    group.throughput(Throughput::Bytes(wire_len as u64));
    group.bench_function("dave", |b| {
        b.iter(|| match Message::parse(black_box(&wire)) {
            // Bound by reference: moving the 224-byte `PongRepr` out would add a memcpy that
            // belongs to the caller, not the codec (the node matches the same way).
            Ok(Message::Pong(ref pong)) => {
                for addr in pong.addrs() {
                    black_box(addr);
                }
                black_box(&pong.challenge);
                black_box(&pong.salt);
                black_box(&pong.pubkey);
                black_box(&pong.sig);
            }
            _ => unreachable!(),
        })
    });
    group.bench_function("prost", |b| {
        b.iter(|| {
            let pong = PongPb::decode(black_box(&pb_bytes[..])).unwrap();
            for addr in &pong.addrs {
                black_box(addr);
            }
            black_box(&pong.challenge);
            black_box(&pong.salt);
            black_box(&pong.pubkey);
            black_box(&pong.sig);
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(ThreadCpuTime::from_env());
    targets = bench_put, bench_get, bench_pong
}
criterion_main!(benches);
