//! What every driver of a [`Router`] does beside its [`PeerTable`], written once for the node's
//! peer thread (`node/peer.rs`) and the full-node simulator (`sim/node.rs`):
//!
//! - [`exchange`]: peer-table events become routing contacts (an authenticated peer that
//!   advertised ROUTING, or a proven address, goes to [`Router::add_verified`]) and the router's
//!   proof requests ([`RouterEffects::prove`]) go to [`PeerTable::prove`], until neither side
//!   has anything left for the other.
//! - [`lookup_view`]: a finished lookup's contacts as the [`PeerSnapshot`] a local put or get
//!   sends to (`via`), with the peer table's trust for the contacts that are also peers.
//! - [`apply_trust`]: the peers storage challenges judge unreliable, handed to the router
//!   (trust scores apply to routing contacts).

use std::sync::Arc;

use crate::keys::id_from_pubkey;
use crate::peer::{self, PeerInfo, PeerSnapshot, PeerTable, TrustPolicy, UNPROVEN_RELIABILITY};
use crate::route::{Contact, Router, RouterEffects};
use crate::wire::Features;

/// Feeds `effects.events` to the router and carries out the router's proof requests on the
/// table; the proofs' datagrams and events are appended to `effects`, the router's sends, done
/// lookups and any further requests to `route_fx`. On return `route_fx.prove` is empty.
///
/// Authenticated peers that advertised ROUTING are verified routing contacts; proven addresses
/// (`RouterEffects::prove`, carried out by the table) are too. A proof the table answers at once
/// (a pinned key) may let a lookup ask for more: the loop ends because the router asks for each
/// address once until it forgets it (`router::MAX_PROVING` at most).
pub fn exchange(
    router: &mut Router,
    table: &mut PeerTable,
    now_ms: u64,
    effects: &mut peer::Effects,
    route_fx: &mut RouterEffects,
) {
    let mut events = effects.events.clone();
    loop {
        for event in events.drain(..) {
            let (addr, pubkey) = match event {
                peer::PeerEvent::Authenticated { addr, pubkey }
                    if table.features_of(addr).contains(Features::ROUTING) =>
                {
                    (addr, pubkey)
                }
                peer::PeerEvent::Proven { addr, pubkey } => (addr, pubkey),
                _ => continue,
            };
            let (id, edge) = (
                id_from_pubkey(&pubkey),
                table.config().edges.contains(&addr),
            );
            let mut fx = router.add_verified(now_ms, id, addr, edge);
            route_fx.sends.append(&mut fx.sends);
            route_fx.done.append(&mut fx.done);
            route_fx.prove.append(&mut fx.prove);
        }
        if route_fx.prove.is_empty() {
            break;
        }
        for addr in std::mem::take(&mut route_fx.prove) {
            let mut fx = table.prove(now_ms, addr);
            events.extend_from_slice(&fx.events);
            effects.append(&mut fx);
        }
    }
}

/// Trust scores apply to routing contacts: the active peers of `peers` that `policy` judges
/// unreliable (`PeerSnapshot::unreliable_addrs`, the rule replica choice uses) rank last in the
/// router's table and give their place to newcomers (`Router::set_unreliable`). Call it whenever
/// the scores may have changed (a new snapshot, a challenge outcome).
pub fn apply_trust(router: &mut Router, peers: &PeerSnapshot, policy: &TrustPolicy) {
    router.set_unreliable(peers.unreliable_addrs(policy));
}

/// The targets of a local put or get found by a lookup: `found` (closest first) as a snapshot the
/// shard core chooses from, each contact with the trust `peers` gives it when it is one of our
/// peers (unproven reliability otherwise), plus our active peers that do not speak ROUTING: a
/// lookup never finds a v1-only node, but one that is among the closest to the owner must keep
/// receiving its PUTs and GETs as in v1 (a mixed network). `None` when the lookup found nobody:
/// the caller uses its peer snapshot.
pub fn lookup_view(found: &[Contact], peers: &PeerSnapshot) -> Option<Arc<PeerSnapshot>> {
    if found.is_empty() {
        return None;
    }
    let v1_only = peers
        .peers()
        .iter()
        .filter(|p| !p.features.contains(Features::ROUTING))
        .filter(|p| found.iter().all(|c| c.addr != p.addr))
        .copied();
    let view = found
        .iter()
        .map(|c| {
            let mut pubkey = [0u8; 32];
            pubkey[..8].copy_from_slice(&c.id.to_le_bytes());
            let known = peers.get(c.addr).copied();
            PeerInfo {
                addr: c.addr,
                pubkey: known.map_or(pubkey, |p| p.pubkey),
                id: c.id,
                edge: known.is_some_and(|p| p.edge),
                reliability: known.map_or(UNPROVEN_RELIABILITY, |p| p.reliability),
                trust: known.map(|p| p.trust).unwrap_or_default(),
                features: Features::ROUTING,
            }
        })
        .chain(v1_only)
        .collect();
    Some(Arc::new(PeerSnapshot::new(view)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn peer(addr: SocketAddr, id: u64, features: Features, reliability: f32) -> PeerInfo {
        let mut pubkey = [7u8; 32];
        pubkey[..8].copy_from_slice(&id.to_le_bytes());
        PeerInfo {
            addr,
            pubkey,
            id,
            edge: false,
            reliability,
            trust: Default::default(),
            features,
        }
    }

    fn contact(addr: SocketAddr, id: u64) -> Contact {
        Contact {
            id,
            addr,
            verified: true,
            pinned: false,
        }
    }

    #[test]
    fn the_view_is_the_lookup_with_peer_trust_and_the_v1_only_peers() {
        let a: SocketAddr = "10.0.0.1:1618".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:1618".parse().unwrap();
        let v1: SocketAddr = "10.0.0.3:1618".parse().unwrap();
        let peers = PeerSnapshot::new(vec![
            peer(a, 1, Features::ROUTING, 0.25),
            peer(v1, 3, Features::NONE, 0.75),
        ]);
        // Found nobody: the caller falls back to its peer snapshot.
        assert!(lookup_view(&[], &peers).is_none());

        let view = lookup_view(&[contact(a, 1), contact(b, 2)], &peers).expect("a view");
        assert_eq!(view.len(), 3);
        // A contact that is a peer keeps the table's key and trust; a stranger is unproven.
        let pa = view.get(a).expect("a");
        assert_eq!((pa.pubkey[8], pa.reliability), (7, 0.25));
        let pb = view.get(b).expect("b");
        assert_eq!((pb.id, pb.pubkey[8]), (2, 0));
        assert_eq!(pb.reliability, UNPROVEN_RELIABILITY);
        // The v1-only peer stays a candidate, as it is.
        assert_eq!(view.get(v1).copied(), peers.get(v1).copied());
    }
}
