//! What every driver of a [`Router`] does beside its [`PeerTable`], written once for the node's
//! peer thread (`node/peer.rs`) and the full-node simulator (`sim/node.rs`):
//!
//! - [`exchange`]: peer-table events become routing contacts (an authenticated peer that
//!   advertised ROUTING, or a proven address, goes to [`Router::add_verified`]) and the router's
//!   proof requests ([`RouterEffects::prove`]) go to [`PeerTable::prove`], until neither side
//!   has anything left for the other; the router's answers and evictions go back to the table
//!   (the liveness of peers that speak ROUTING).
//! - [`lookup_view`]: a finished lookup's contacts as the [`PeerSnapshot`] a local put or get
//!   sends to (`via`), with the peer table's trust for the contacts that are also peers.
//! - [`apply_trust`]: the peers storage challenges judge unreliable, handed to the router
//!   (trust scores apply to routing contacts).

use std::sync::Arc;

use crate::keys::id_from_pubkey;
use crate::peer::{self, PeerInfo, PeerSnapshot, PeerTable, TrustPolicy, UNPROVEN_RELIABILITY};
use crate::route::{Contact, Router, RouterEffects};
use crate::wire::Features;

/// Feeds `effects.events` into `router` and `route_fx`'s outcomes into `table`, at `now_ms`.
///
/// Peer table → router: a peer authenticated with the ROUTING feature, and an address proof that
/// succeeded, are verified contacts (`Router::add_verified`); the router's proof requests
/// (`RouterEffects::prove`) are carried out by the table (`PeerTable::prove`), whose answer may
/// come at once (a pinned key) and feed the router again. Router → peer table: addresses that
/// answered a router request keep the peers the router watches alive (`PeerTable::router_heard`);
/// contacts the router evicted are dropped (`PeerTable::router_evicted`). With
/// `PeerConfig::router_liveness` this is what replaces the one-second PING for peers that speak
/// ROUTING (issue 12, "liveness without a full mesh").
///
/// Afterwards `route_fx` holds everything the router wants sent and the lookups that ended (its
/// `prove`, `answered` and `evicted` lists are consumed), and `effects` everything the table
/// wants sent, with the events of this exchange appended (a `Dropped` for an evicted peer, a
/// `Proven` for a proof answered from a pinned key, …).
///
/// Terminates: the router asks for each address's proof once until it forgets it (at most
/// `router::MAX_PROVING` outstanding), and the table's answers to `router_heard` and
/// `router_evicted` never feed the router.
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
            let edge = table.config().edges.contains(&addr);
            let mut fx = router.add_verified(now_ms, id_from_pubkey(&pubkey), addr, edge);
            route_fx.append(&mut fx);
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
    for addr in std::mem::take(&mut route_fx.answered) {
        effects.append(&mut table.router_heard(now_ms, addr));
    }
    for addr in std::mem::take(&mut route_fx.evicted) {
        effects.append(&mut table.router_evicted(now_ms, addr));
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
/// peers (unproven reliability otherwise; and the features it advertised, else those of every
/// dave build), plus our active peers that do not speak ROUTING: a
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
                // A contact we have not met is a dave node (it speaks ROUTING); every dave
                // build speaks RECORD_V2 with it by default (`Features::ALL`), and one
                // configured without it drops a PUT2/GET2 as an unknown op: a wrong guess costs
                // one datagram and never reaches a v1 node.
                features: known
                    .map_or(Features::ALL, |p| p.features)
                    .union(Features::ROUTING),
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

/// `exchange` with a real table and router.
#[cfg(test)]
mod exchange_tests {
    use super::*;
    use crate::keys::Keypair;
    use crate::peer::PeerConfig;
    use crate::peer::PeerEvent;
    use crate::route::RouterConfig;
    use crate::wire::route::{NodesRepr, RouteMessage};
    use std::net::SocketAddr;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// Delivers every datagram of `fx` addressed to `to` into `table` (from `from`), returning
    /// what `table` wants sent.
    fn deliver(
        fx: &peer::Effects,
        from: SocketAddr,
        to: SocketAddr,
        table: &mut PeerTable,
    ) -> peer::Effects {
        let mut out = peer::Effects::default();
        for d in fx.datagrams.iter().filter(|d| d.to == to) {
            out.append(&mut table.handle(0, from, &d.message.message()));
        }
        out
    }

    /// The node's peer table A (with a router) authenticates B, which speaks ROUTING: `exchange`
    /// makes B a routing contact; B's answer to a router request counts as liveness in the
    /// table; when the router evicts B, the table drops it.
    #[test]
    fn contacts_in_answers_and_evictions_out() {
        let (a, b) = (sa("10.0.0.1:4000"), sa("10.0.2.1:4000"));
        let mut ta = PeerTable::new(
            PeerConfig {
                listen_addr: Some(a),
                router_liveness: true,
                // Active (and so watched by the router) as soon as it answers.
                activation_delay_ms: 0,
                ..PeerConfig::default()
            },
            Keypair::from_seed(&[1; 32]),
            1,
        )
        .unwrap();
        let mut tb = PeerTable::new(
            PeerConfig {
                listen_addr: Some(b),
                edges: vec![a],
                ..PeerConfig::default()
            },
            Keypair::from_seed(&[2; 32]),
            2,
        )
        .unwrap();
        let mut router = Router::new(
            Keypair::from_seed(&[1; 32]).id(),
            RouterConfig::default(),
            3,
        );
        // B pings its edge A; A answers and pings the stranger B; B answers.
        let fx_b = tb.tick(0);
        let fx_a = deliver(&fx_b, b, a, &mut ta);
        let fx_b = deliver(&fx_a, a, b, &mut tb);
        let mut peer_fx = deliver(&fx_b, b, a, &mut ta);
        assert!(ta.is_routed(b));
        let mut route_fx = RouterEffects::default();
        exchange(&mut router, &mut ta, 0, &mut peer_fx, &mut route_fx);
        assert!(router.table().contains(b), "a verified routing contact");

        // B answers a lookup's request: the table hears of it.
        let (_, fx) = router.start_lookup(10, 42);
        let Some((to, RouteMessage::FindNode(req))) = fx.sends.first().copied() else {
            panic!("a FIND_NODE to B");
        };
        assert_eq!(to, b);
        let mut route_fx = router.handle(
            20,
            b,
            true,
            10,
            &RouteMessage::Nodes(NodesRepr::new(req.nonce)),
        );
        assert_eq!(route_fx.answered, vec![b]);
        let mut peer_fx = peer::Effects::default();
        exchange(&mut router, &mut ta, 20, &mut peer_fx, &mut route_fx);
        assert!(route_fx.answered.is_empty(), "consumed");
        assert_eq!(ta.stats().router_heard, 1);

        // Two lookups B never answers (each asks it twice, `MAX_REQUESTS_PER_CONTACT`): the
        // router evicts B and the table drops it.
        let mut now = 1_000;
        let mut dropped = false;
        for _ in 0..2 {
            let (_, _) = router.start_lookup(now, 42);
            for _ in 0..2 {
                now += 5_000;
                let mut route_fx = router.tick(now);
                let mut peer_fx = peer::Effects::default();
                exchange(&mut router, &mut ta, now, &mut peer_fx, &mut route_fx);
                dropped |= peer_fx.events.contains(&PeerEvent::Dropped { addr: b });
            }
        }
        assert!(dropped, "dropped on the router's eviction");
        assert!(!router.table().contains(b) && !ta.is_peer(b));
        assert_eq!(ta.stats().router_evicted, 1);
    }
}
