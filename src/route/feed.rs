//! [`exchange`]: the one place where a node's peer table and its router feed each other, for
//! every driver that runs both (the node's peer thread, and the simulator once it runs a router),
//! so the decisions below exist once.
//!
//! - Peer table → router: a peer authenticated with the ROUTING feature, and an address proof
//!   that succeeded, are verified contacts (`Router::add_verified`); the router's proof requests
//!   (`RouterEffects::prove`) are carried out by the table (`PeerTable::prove`), whose answer may
//!   come at once (a pinned key) and feed the router again.
//! - Router → peer table: addresses that answered a router request keep the peers the router
//!   watches alive (`PeerTable::router_heard`); contacts the router evicted are dropped
//!   (`PeerTable::router_evicted`). With `PeerConfig::router_liveness` this is what replaces the
//!   one-second PING for peers that speak ROUTING (issue 12, "liveness without a full mesh").

use crate::keys::id_from_pubkey;
use crate::peer::{self, PeerEvent, PeerTable};
use crate::route::{Router, RouterEffects};
use crate::wire::Features;

/// Feeds `peer_fx`'s events into `router` and `route_fx`'s outcomes into `table`, at `now_ms`.
///
/// Afterwards `route_fx` holds everything the router wants sent and the lookups that ended (its
/// `prove`, `answered` and `evicted` lists are consumed), and `peer_fx` everything the table
/// wants sent, with the events of this exchange appended (a `Dropped` for an evicted peer, a
/// `Proven` for a proof answered from a pinned key, …).
///
/// Terminates: the router asks for each address's proof once until it forgets it (at most
/// `router::MAX_PROVING` outstanding), and the table's answers to `router_heard` and
/// `router_evicted` never feed the router.
pub fn exchange(
    now_ms: u64,
    table: &mut PeerTable,
    router: &mut Router,
    peer_fx: &mut peer::Effects,
    route_fx: &mut RouterEffects,
) {
    let mut events = peer_fx.events.clone();
    loop {
        for event in events.drain(..) {
            let (addr, pubkey) = match event {
                PeerEvent::Authenticated { addr, pubkey }
                    if table.features_of(addr).contains(Features::ROUTING) =>
                {
                    (addr, pubkey)
                }
                PeerEvent::Proven { addr, pubkey } => (addr, pubkey),
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
            peer_fx.append(&mut fx);
        }
    }
    for addr in std::mem::take(&mut route_fx.answered) {
        peer_fx.append(&mut table.router_heard(now_ms, addr));
    }
    for addr in std::mem::take(&mut route_fx.evicted) {
        peer_fx.append(&mut table.router_evicted(now_ms, addr));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Keypair;
    use crate::peer::PeerConfig;
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
        exchange(0, &mut ta, &mut router, &mut peer_fx, &mut route_fx);
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
        exchange(20, &mut ta, &mut router, &mut peer_fx, &mut route_fx);
        assert!(route_fx.answered.is_empty(), "consumed");
        assert_eq!(ta.stats().router_heard, 1);

        // Two unanswered requests in a row: the router evicts B and the table drops it.
        let mut now = 1_000;
        let mut dropped = false;
        for _ in 0..2 {
            let (_, _) = router.start_lookup(now, 42);
            now += 5_000;
            let mut route_fx = router.tick(now);
            let mut peer_fx = peer::Effects::default();
            exchange(now, &mut ta, &mut router, &mut peer_fx, &mut route_fx);
            dropped |= peer_fx.events.contains(&PeerEvent::Dropped { addr: b });
        }
        assert!(dropped, "dropped on the router's eviction");
        assert!(!router.table().contains(b) && !ta.is_peer(b));
        assert_eq!(ta.stats().router_evicted, 1);
    }
}
