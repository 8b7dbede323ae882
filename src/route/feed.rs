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
