//! Fuzz target for the v2 record codec (`wire::record2`): any bytes, never a panic, and on
//! success `emit(parse(x)) == x`, every accessor works, and v2 verification (which hashes and
//! checks signatures) never panics either.

#![no_main]

use dave::limits::MAX_PACKET_LEN;
use dave::wire::record2::{Dat2, Message2};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The bare dat2 parser (backup entries hold dat2s without a message header).
    if let Ok(dat) = Dat2::new_checked(data) {
        assert_eq!(dat.fields().to_record().as_bytes(), data);
        let _ = dave::pow::verify_dat2(&dat, 0, i64::MAX);
    }
    let Ok(msg) = Message2::parse(data) else {
        return;
    };
    assert!(data.len() <= MAX_PACKET_LEN);
    assert_eq!(msg.buffer_len(), data.len());
    let mut buf = [0u8; MAX_PACKET_LEN];
    let n = msg.emit(&mut buf);
    assert_eq!(&buf[..n], data, "emit(parse(x)) != x");
    match msg {
        Message2::Put2(dat) | Message2::Get2Ack(dat) | Message2::Put2Cas { dat, .. } => {
            assert_eq!(msg.record_key(), Some((dat.pubkey(), dat.key())));
            let _ = (dat.seq(), dat.value(), format!("{dat:?}"));
            let _ = dave::pow::verify_dat2(&dat, 0, i64::MAX);
        }
        Message2::Put2Commit { commit, dat } => {
            let _ = dave::pow::verify_commit2(&dat, commit);
        }
        Message2::Get2 { pubkey, key }
        | Message2::Get2None { pubkey, key }
        | Message2::Put2Status { pubkey, key, .. } => {
            assert_eq!(msg.record_key(), Some((pubkey, key)));
        }
    }
});
