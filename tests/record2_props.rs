//! Property tests of the v2 record codec (`wire::record2`): every valid dat2 and every v2
//! message round-trips emit → parse → emit byte for byte; no bytes of any length or content
//! panic the parsers or the verifiers; no strict prefix of a valid message parses; one extra byte
//! is refused; and a re-cut of a signed record's key/value boundary never verifies.

use dave::keys::Keypair;
use dave::limits::{MAX_KEY_LEN, MAX_PACKET_LEN};
use dave::pow::{make_dat2_single, verify_dat2};
use dave::wire::Error;
use dave::wire::record2::{Dat2, Dat2Fields, MAX_KEY_VALUE_LEN2, Message2, Status2};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct OwnedDat2 {
    time_ms: i64,
    seq: u64,
    salt: [u8; 16],
    work: [u8; 32],
    sig: [u8; 64],
    pubkey: [u8; 32],
    key: Vec<u8>,
    value: Vec<u8>,
}

impl OwnedDat2 {
    fn fields(&self) -> Dat2Fields<'_> {
        Dat2Fields {
            time_ms: self.time_ms,
            seq: self.seq,
            salt: self.salt,
            work: self.work,
            sig: self.sig,
            pubkey: self.pubkey,
            key: &self.key,
            value: &self.value,
        }
    }
}

fn dat2() -> impl Strategy<Value = OwnedDat2> {
    (
        any::<i64>(),
        any::<u64>(),
        any::<[u8; 16]>(),
        any::<[u8; 32]>(),
        prop::collection::vec(any::<u8>(), 64),
        any::<[u8; 32]>(),
        prop::collection::vec(any::<u8>(), 0..=MAX_KEY_LEN),
    )
        .prop_flat_map(|(time_ms, seq, salt, work, sig, pubkey, key)| {
            let room = MAX_KEY_VALUE_LEN2 - key.len();
            prop::collection::vec(any::<u8>(), 0..=room).prop_map(move |value| {
                let mut s = [0u8; 64];
                s.copy_from_slice(&sig);
                OwnedDat2 {
                    time_ms,
                    seq,
                    salt,
                    work,
                    sig: s,
                    pubkey,
                    key: key.clone(),
                    value,
                }
            })
        })
}

/// Every kind of v2 message around one dat2, emitted.
fn messages(d: &OwnedDat2, n: u64, status: u8) -> Vec<Vec<u8>> {
    let rec = d.fields().to_record();
    let view = rec.as_view();
    let commit = [n as u8; 64];
    let key = &d.key[..d.key.len().min(MAX_KEY_LEN)];
    let status = Status2::from_byte(status % 6).unwrap_or(Status2::Stored);
    vec![
        Message2::Put2(view).to_vec(),
        Message2::Get2Ack(view).to_vec(),
        Message2::Get2 {
            pubkey: &d.pubkey,
            key,
        }
        .to_vec(),
        Message2::Get2None {
            pubkey: &d.pubkey,
            key,
        }
        .to_vec(),
        Message2::Put2Cas {
            expect_seq: n,
            dat: view,
        }
        .to_vec(),
        Message2::Put2Status {
            status,
            held_seq: n,
            work: &d.work,
            pubkey: &d.pubkey,
            key,
        }
        .to_vec(),
        Message2::Put2Commit {
            commit: &commit,
            dat: view,
        }
        .to_vec(),
    ]
}

proptest! {
    #[test]
    fn every_dat2_round_trips(d in dat2()) {
        let rec = d.fields().to_record();
        let view = Dat2::new_checked(rec.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        prop_assert_eq!(view.fields(), d.fields());
        let again = view.fields().to_record();
        prop_assert_eq!(again.as_bytes(), rec.as_bytes());
    }

    #[test]
    fn every_message_round_trips_and_no_prefix_or_extension_parses(
        d in dat2(), n in any::<u64>(), status in any::<u8>()
    ) {
        for bytes in messages(&d, n, status) {
            if bytes.len() > MAX_PACKET_LEN {
                // Only a PUT2_COMMIT of the very largest dat2 could, and MAX_KEY_VALUE_LEN2
                // is chosen so that it cannot.
                prop_assert!(false, "a message over 1424 bytes");
            }
            let m = Message2::parse(&bytes).unwrap_or_else(|e| panic!("{e}: {}", hex::encode(&bytes)));
            prop_assert_eq!(m.to_vec(), bytes.clone());
            for cut in 0..bytes.len() {
                prop_assert!(Message2::parse(&bytes[..cut]).is_err(), "prefix {cut} parsed");
            }
            let mut longer = bytes.clone();
            longer.push(0);
            let expected = if longer.len() > MAX_PACKET_LEN { Error::TooLong } else { Error::TrailingBytes };
            // A longer dat-carrying message first fails its dat length check.
            let got = Message2::parse(&longer).err();
            prop_assert!(got == Some(expected) || got == Some(Error::BadDatLength), "{got:?}");
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..1500), op in 0x18u8..=0x1f) {
        let mut with_op = bytes.clone();
        if let Some(first) = with_op.first_mut() {
            *first = op;
        }
        for input in [&bytes, &with_op] {
            if let Ok(m) = Message2::parse(input) {
                prop_assert_eq!(&m.to_vec(), input);
                if let Some(dat) = match m {
                    Message2::Put2(d) | Message2::Get2Ack(d) => Some(d),
                    Message2::Put2Cas { dat, .. } | Message2::Put2Commit { dat, .. } => Some(dat),
                    _ => None,
                } {
                    let _ = verify_dat2(&dat, 0, i64::MAX);
                }
            }
            if let Ok(dat) = Dat2::new_checked(&input[..]) {
                let _ = verify_dat2(&dat, 0, i64::MAX);
            }
        }
    }

    #[test]
    fn a_recut_boundary_never_verifies(
        key in prop::collection::vec(any::<u8>(), 1..20),
        value in prop::collection::vec(any::<u8>(), 1..20),
        shift in 1usize..10,
        left in any::<bool>(),
    ) {
        let owner = Keypair::from_seed(&[3; 32]);
        let dat = make_dat2_single(&owner, &key, &value, 1, 1, 0);
        let joined: Vec<u8> = key.iter().chain(&value).copied().collect();
        let cut = if left { key.len().saturating_sub(shift) } else { (key.len() + shift).min(joined.len()) };
        prop_assume!(cut != key.len());
        let mut recut = dat.fields();
        recut.key = &joined[..cut];
        recut.value = &joined[cut..];
        let recut = recut.to_record();
        prop_assert!(verify_dat2(&recut, 0, i64::MAX).is_err());
    }
}
