//! IPAM operations with ownership semantics over any [`Store`]: reserve one
//! address per range set for an attachment, release by owner, garbage-collect.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use ipnet::IpNet;

use crate::allocator::{allocate, check_static, Taken};
use crate::config::{usable_bounds, Range, RangeSet};
use crate::error::{IpamError, Result};
use crate::store::{Owner, Reservation, State, Store};

/// An address handed to an attachment, with what the result needs about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub ip: IpAddr,
    /// The subnet the address belongs to (its prefix is the interface prefix).
    pub subnet: IpNet,
    pub gateway: Option<IpAddr>,
    /// Reserved by this call (false: the owner already held it — a repeated ADD).
    pub fresh: bool,
    /// The round-robin cursor before this reservation moved it, so a rollback
    /// leaves the state exactly as it was.
    cursor: Option<(String, Option<IpAddr>)>,
}

impl Lease {
    pub fn prefix(&self) -> u8 {
        self.subnet.prefix_len()
    }
}

pub struct Ipam<S: Store> {
    store: S,
}

impl<S: Store> Ipam<S> {
    pub fn new(store: S) -> Self {
        Ipam { store }
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// Reserves one address from every range set for `owner`, all or nothing.
    /// `requested` are static addresses; each must fall in one of the sets.
    /// Repeating the call for the same owner returns the same addresses.
    pub fn allocate(
        &self, sets: &[RangeSet], exclude: &[IpNet], owner: &Owner, requested: &[IpAddr],
    ) -> Result<Vec<Lease>> {
        self.store.update(|state| allocate_in_sets(state, sets, exclude, owner, requested))
    }

    /// Like [`Self::allocate`], from the address blocks the node agent recorded
    /// in the state (cluster pools): one address per family the blocks cover.
    pub fn allocate_in_blocks(
        &self, exclude: &[IpNet], owner: &Owner, requested: &[IpAddr],
    ) -> Result<Vec<Lease>> {
        self.store.update(|state| {
            let sets = blocks_as_sets(&state.blocks);
            if sets.is_empty() {
                return Err(IpamError::Unavailable(
                    "this node holds no address blocks of the pool yet".into(),
                ));
            }
            check_held(state, crate::store::boot_clock_ms())?;
            allocate_in_sets(state, &sets, exclude, owner, requested)
        })
    }

    /// Releases every address of `owner`; returns what was released (empty when
    /// there was nothing: release is idempotent).
    pub fn release(&self, owner: &Owner) -> Result<Vec<IpAddr>> {
        self.store.update(|state| {
            let mine: Vec<IpAddr> = owned_by(state, owner).collect();
            for ip in &mine {
                state.reservations.remove(ip);
            }
            Ok(mine)
        })
    }

    /// Undoes `leases` of a failed ADD: gives back only what that ADD reserved
    /// and puts the round-robin cursor back (unless another ADD moved it since).
    pub fn rollback(&self, owner: &Owner, leases: &[Lease]) -> Result<()> {
        self.store.update(|state| {
            for lease in leases.iter().filter(|l| l.fresh) {
                if state.reservations.get(&lease.ip).is_some_and(|r| r.owner.holds(owner)) {
                    state.reservations.remove(&lease.ip);
                }
                if let Some((set, previous)) = &lease.cursor {
                    if state.last_reserved.get(set) == Some(&lease.ip) {
                        match previous {
                            Some(p) => state.last_reserved.insert(set.clone(), *p),
                            None => state.last_reserved.remove(set),
                        };
                    }
                }
            }
            Ok(())
        })
    }

    /// Drops every reservation whose owner `keep` rejects; returns them.
    pub fn gc(&self, keep: impl Fn(&Owner) -> bool) -> Result<Vec<(IpAddr, Owner)>> {
        self.store.update(|state| {
            let stale: Vec<(IpAddr, Owner)> = state
                .reservations
                .iter()
                .filter(|(_, r)| !keep(&r.owner))
                .map(|(ip, r)| (*ip, r.owner.clone()))
                .collect();
            for (ip, _) in &stale {
                state.reservations.remove(ip);
            }
            Ok(stale)
        })
    }

    /// The addresses `owner` holds.
    pub fn leases_of(&self, owner: &Owner) -> Result<Vec<IpAddr>> {
        Ok(owned_by(&self.store.read()?, owner).collect())
    }

    pub fn state(&self) -> Result<State> {
        self.store.read()
    }
}

fn allocate_in_sets(
    state: &mut State, sets: &[RangeSet], exclude: &[IpNet], owner: &Owner, requested: &[IpAddr],
) -> Result<Vec<Lease>> {
    for ip in requested {
        if !sets.iter().any(|s| s.range_of(*ip).is_some()) {
            let ranges = sets.iter().map(RangeSet::describe).collect::<Vec<_>>().join("; ");
            return Err(IpamError::StaticOutside { ip: *ip, ranges });
        }
    }
    let mut leases = Vec::with_capacity(sets.len());
    for set in sets {
        leases.push(allocate_in_set(state, set, exclude, owner, requested)?);
    }
    Ok(leases)
}

/// A node's address blocks as range sets: each block is a range of its own
/// (its first address is the gateway, as host-local would make it), one set
/// per family.
/// The node's blocks are surely its own at `now` (boot clock, ms): the agent
/// has had etcd confirm it recently enough.
fn check_held(state: &State, now: u64) -> Result<()> {
    if now < state.blocks_held_until {
        return Ok(());
    }
    let when = match state.blocks_held_until {
        0 => "has never been confirmed".to_string(),
        t => format!("lapsed {:.1} s ago", (now - t) as f64 / 1000.0),
    };
    Err(IpamError::Unconfirmed(format!(
        "this node's hold on its address blocks {when}: is `nearhost agent` running and connected to etcd? Until it confirms the blocks are still this node's, none of their addresses is handed out (another node may hold them now)"
    )))
}

pub fn blocks_as_sets(blocks: &[IpNet]) -> Vec<RangeSet> {
    let mut sets: Vec<RangeSet> = Vec::new();
    for v6 in [false, true] {
        let ranges: Vec<Range> = blocks
            .iter()
            .filter(|b| b.addr().is_ipv6() == v6)
            .map(|b| {
                let (start, end) = usable_bounds(b);
                Range { subnet: *b, start, end, gateway: Some(start) }
            })
            .collect();
        if !ranges.is_empty() {
            sets.push(RangeSet { ranges });
        }
    }
    sets
}

/// Addresses of `block` held by anyone.
pub fn reserved_in(state: &State, block: &IpNet) -> usize {
    state.reservations.keys().filter(|ip| block.contains(*ip)).count()
}

fn owned_by<'a>(state: &'a State, owner: &'a Owner) -> impl Iterator<Item = IpAddr> + 'a {
    state.reservations.iter().filter(move |(_, r)| r.owner.holds(owner)).map(|(ip, _)| *ip)
}

fn allocate_in_set(
    state: &mut State, set: &RangeSet, exclude: &[IpNet], owner: &Owner, requested: &[IpAddr],
) -> Result<Lease> {
    let lease_for = |ip: IpAddr, cursor: Option<(String, Option<IpAddr>)>| -> Lease {
        let r = set.range_of(ip).expect("address is in the set");
        Lease { ip, subnet: r.subnet, gateway: r.gateway, fresh: cursor.is_some(), cursor }
    };
    // A repeated ADD for the same attachment gets what it already holds.
    if let Some(ip) = owned_by(state, owner).find(|ip| set.range_of(*ip).is_some()) {
        return Ok(lease_for(ip, None));
    }
    let reserved: BTreeSet<IpAddr> = state.reservations.keys().copied().collect();
    let taken = Taken { reserved: &reserved, exclude };
    let ip = match requested.iter().find(|ip| set.range_of(**ip).is_some()) {
        Some(&ip) => match check_static(set, ip, &taken) {
            Ok(_) => ip,
            Err(IpamError::StaticTaken { ip, .. }) => {
                let holder =
                    state.reservations.get(&ip).map(|r| r.owner.to_string()).unwrap_or_default();
                return Err(IpamError::StaticTaken { ip, owner: holder });
            }
            Err(e) => return Err(e),
        },
        None => allocate(set, &taken, state.last_reserved.get(&set.id()).copied())?.0,
    };
    let since = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    state.reservations.insert(ip, Reservation { owner: owner.clone(), since });
    let previous = state.last_reserved.insert(set.id(), ip);
    Ok(lease_for(ip, Some((set.id(), previous))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::IpamConfig;
    use crate::store::MemStore;
    use serde_json::json;

    fn cfg() -> IpamConfig {
        IpamConfig::parse(&json!({"ranges": [
            [{"subnet": "198.18.0.0/29", "gateway": "198.18.0.1"}],
            [{"subnet": "2001:2::/125"}]
        ]}))
        .unwrap()
    }

    #[test]
    fn dual_stack_allocate_is_idempotent_and_released_by_owner() {
        let c = cfg();
        let ipam = Ipam::new(MemStore::default());
        let a = Owner::new("ctr-a", "eth0");
        let first = ipam.allocate(&c.range_sets, &c.exclude, &a, &[]).unwrap();
        assert_eq!(first.len(), 2);
        assert_eq!(first[0].ip.to_string(), "198.18.0.2");
        assert_eq!(first[0].gateway.unwrap().to_string(), "198.18.0.1");
        assert!(first[1].ip.is_ipv6());
        assert!(first.iter().all(|l| l.fresh));
        let again = ipam.allocate(&c.range_sets, &c.exclude, &a, &[]).unwrap();
        assert_eq!(
            again.iter().map(|l| l.ip).collect::<Vec<_>>(),
            first.iter().map(|l| l.ip).collect::<Vec<_>>()
        );
        assert!(
            again.iter().all(|l| !l.fresh),
            "a repeated ADD must not count as a new reservation"
        );
        ipam.rollback(&a, &again).unwrap();
        assert_eq!(
            ipam.leases_of(&a).unwrap().len(),
            2,
            "rolling back a repeated ADD must keep the first ADD's addresses"
        );
        assert_eq!(ipam.release(&a).unwrap().len(), 2);
        assert!(ipam.release(&a).unwrap().is_empty());
        assert!(ipam.state().unwrap().reservations.is_empty());
    }

    #[test]
    fn blocks_become_one_set_per_family_and_allocate() {
        let ipam = Ipam::new(MemStore::default());
        let none = ipam.allocate_in_blocks(&[], &Owner::new("x", "eth0"), &[]);
        assert!(matches!(none, Err(IpamError::Unavailable(_))), "{none:?}");
        ipam.store()
            .update(|s| {
                s.blocks =
                    vec!["198.18.64.0/30".parse().unwrap(), "198.18.64.8/30".parse().unwrap()];
                s.blocks_held_until = crate::store::boot_clock_ms() + 60_000;
                Ok(())
            })
            .unwrap();
        let sets = blocks_as_sets(&ipam.state().unwrap().blocks);
        assert_eq!(sets.len(), 1);
        assert_eq!(sets[0].ranges.len(), 2);
        // each /30 block: .1 gateway, .2 usable
        let a = ipam.allocate_in_blocks(&[], &Owner::new("a", "eth0"), &[]).unwrap();
        let b = ipam.allocate_in_blocks(&[], &Owner::new("b", "eth0"), &[]).unwrap();
        assert_eq!(a[0].ip.to_string(), "198.18.64.2");
        assert_eq!(b[0].ip.to_string(), "198.18.64.10");
        assert_eq!(b[0].subnet.to_string(), "198.18.64.8/30");
        assert!(matches!(
            ipam.allocate_in_blocks(&[], &Owner::new("c", "eth0"), &[]),
            Err(IpamError::Exhausted { .. })
        ));
        assert_eq!(reserved_in(&ipam.state().unwrap(), &"198.18.64.8/30".parse().unwrap()), 1);
    }

    #[test]
    fn blocks_whose_hold_is_not_confirmed_give_no_address() {
        let ipam = Ipam::new(MemStore::default());
        let now = crate::store::boot_clock_ms();
        let with = |held: u64| {
            ipam.store()
                .update(|s| {
                    s.blocks = vec!["198.18.64.0/29".parse().unwrap()];
                    s.blocks_held_until = held;
                    Ok(())
                })
                .unwrap();
            ipam.allocate_in_blocks(&[], &Owner::new("a", "eth0"), &[])
        };
        for (held, says) in [(0, "never been confirmed"), (now - 5_000, "lapsed")] {
            match with(held) {
                Err(IpamError::Unconfirmed(m)) => assert!(m.contains(says), "{m}"),
                other => panic!("{other:?}"),
            }
            assert!(ipam.state().unwrap().reservations.is_empty());
        }
        assert_eq!(with(now + 60_000).unwrap().len(), 1);
    }

    #[test]
    fn rollback_restores_the_state_exactly() {
        let c = cfg();
        let ipam = Ipam::new(MemStore::default());
        ipam.allocate(&c.range_sets, &c.exclude, &Owner::new("first", "eth0"), &[]).unwrap();
        let before = ipam.state().unwrap();
        let b = Owner::new("second", "eth0");
        let leases = ipam.allocate(&c.range_sets, &c.exclude, &b, &[]).unwrap();
        ipam.rollback(&b, &leases).unwrap();
        assert_eq!(ipam.state().unwrap(), before);
    }

    #[test]
    fn exhaustion_is_all_or_nothing() {
        let c = cfg();
        let ipam = Ipam::new(MemStore::default());
        // the /29 has 5 usable addresses besides the gateway
        for i in 0..5 {
            ipam.allocate(&c.range_sets, &c.exclude, &Owner::new(format!("c{i}"), "eth0"), &[])
                .unwrap();
        }
        let before = ipam.state().unwrap();
        let err =
            ipam.allocate(&c.range_sets, &c.exclude, &Owner::new("late", "eth0"), &[]).unwrap_err();
        assert!(matches!(err, IpamError::Exhausted { .. }), "{err}");
        assert_eq!(ipam.state().unwrap(), before, "a failed allocation must change nothing");
    }

    #[test]
    fn static_requests() {
        let c = cfg();
        let ipam = Ipam::new(MemStore::default());
        let want: IpAddr = "198.18.0.5".parse().unwrap();
        let got =
            ipam.allocate(&c.range_sets, &c.exclude, &Owner::new("a", "eth0"), &[want]).unwrap();
        assert_eq!(got[0].ip, want);
        match ipam.allocate(&c.range_sets, &c.exclude, &Owner::new("b", "eth0"), &[want]) {
            Err(IpamError::StaticTaken { owner, .. }) => assert_eq!(owner, "a/eth0"),
            other => panic!("{other:?}"),
        }
        let outside: IpAddr = "198.19.0.5".parse().unwrap();
        assert!(matches!(
            ipam.allocate(&c.range_sets, &c.exclude, &Owner::new("b", "eth0"), &[outside]),
            Err(IpamError::StaticOutside { .. })
        ));
        let gw: IpAddr = "198.18.0.1".parse().unwrap();
        assert!(matches!(
            ipam.allocate(&c.range_sets, &c.exclude, &Owner::new("b", "eth0"), &[gw]),
            Err(IpamError::StaticReserved { .. })
        ));
    }

    #[test]
    fn owners_on_other_networks_are_other_attachments() {
        let c = cfg();
        let ipam = Ipam::new(MemStore::default());
        let a = Owner::new("ctr", "eth0").on("net-a");
        let b = Owner::new("ctr", "eth0").on("net-b");
        let on_a = ipam.allocate(&c.range_sets, &c.exclude, &a, &[]).unwrap();
        let on_b = ipam.allocate(&c.range_sets, &c.exclude, &b, &[]).unwrap();
        assert_ne!(on_a[0].ip, on_b[0].ip, "a second network's ADD is a new attachment");
        assert_eq!(ipam.release(&a).unwrap().len(), 2);
        assert_eq!(ipam.leases_of(&b).unwrap().len(), 2, "DEL on net-a kept net-b's");
        // A reservation from before networks were recorded is any network's.
        let legacy = Owner::new("old", "eth0");
        ipam.allocate(&c.range_sets, &c.exclude, &legacy, &[]).unwrap();
        assert_eq!(ipam.release(&Owner::new("old", "eth0").on("net-a")).unwrap().len(), 2);
    }

    #[test]
    fn gc_keeps_only_valid_owners() {
        let c = cfg();
        let ipam = Ipam::new(MemStore::default());
        for id in ["keep", "drop"] {
            ipam.allocate(&c.range_sets, &c.exclude, &Owner::new(id, "eth0"), &[]).unwrap();
        }
        let dropped = ipam.gc(|o| o.container_id == "keep").unwrap();
        assert_eq!(dropped.len(), 2);
        assert!(dropped.iter().all(|(_, o)| o.container_id == "drop"));
        assert_eq!(ipam.state().unwrap().reservations.len(), 2);
    }
}
