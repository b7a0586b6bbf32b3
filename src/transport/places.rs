//! Who gets a connection's place in a [`crate::transport::serve`] server:
//! the connections open, per address ([`peer_key`]: an IPv6 host by its
//! /64), a cap per address, and with every place taken, which connection
//! gives its place to a newcomer ([`Conns::when_full`]).

use crate::transport::ws::registry::peer_key;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::IpAddr;
use std::rc::Rc;

/// Open connections, per address ([`peer_key`]: an IPv6 host by its /64),
/// oldest first, each with the signal that asks it to close and whether it
/// is streaming a download.
#[derive(Default)]
pub struct Conns {
    inner: RefCell<ConnsInner>,
    /// Fired when a connection ends.
    pub freed: tokio::sync::Notify,
}

#[derive(Default)]
struct ConnsInner {
    total: usize,
    next_id: u64,
    per_ip: HashMap<IpAddr, Vec<Place>>,
}

/// One open connection, as [`Conns`] sees it.
struct Place {
    id: u64,
    /// Asks the connection to close.
    close: Rc<tokio::sync::Notify>,
    /// Set while it answers with a stream (a download, until its body is
    /// sent or dropped: `serve::Served`): cutting it costs its client the rest
    /// of the file, where an idle keep-alive connection costs nothing.
    streaming: Rc<Cell<bool>>,
}

/// What a connection gets with its place: the place itself, what asks it
/// to close, and where it says that it is streaming.
pub type Taken = (Slot, Rc<tokio::sync::Notify>, Rc<Cell<bool>>);

/// One connection's place in [`Conns`], given back when it is dropped.
pub struct Slot {
    conns: Rc<Conns>,
    key: IpAddr,
    id: u64,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut t = self.conns.inner.borrow_mut();
        t.total -= 1;
        if let Some(v) = t.per_ip.get_mut(&self.key) {
            v.retain(|p| p.id != self.id);
            if v.is_empty() {
                t.per_ip.remove(&self.key);
            }
        }
        drop(t);
        self.conns.freed.notify_one();
    }
}

impl Conns {
    pub fn total(&self) -> usize {
        self.inner.borrow().total
    }

    fn held_by(&self, key: &IpAddr) -> usize {
        self.inner.borrow().per_ip.get(key).map_or(0, Vec::len)
    }

    /// A place for a connection from `ip`, what asks it to close and its
    /// streaming flag; `None` when `ip` already has `max_per_ip` (loopback
    /// excepted).
    pub fn take(self: &Rc<Self>, ip: IpAddr, max_per_ip: usize) -> Option<Taken> {
        let key = peer_key(ip);
        let mut t = self.inner.borrow_mut();
        let id = t.next_id;
        let v = t.per_ip.entry(key).or_default();
        if !ip.is_loopback() && v.len() >= max_per_ip {
            if v.is_empty() {
                t.per_ip.remove(&key);
            }
            return None;
        }
        let close = Rc::new(tokio::sync::Notify::new());
        let streaming = Rc::new(Cell::new(false));
        v.push(Place {
            id,
            close: close.clone(),
            streaming: streaming.clone(),
        });
        t.next_id += 1;
        t.total += 1;
        let slot = Slot {
            conns: self.clone(),
            key,
            id,
        };
        Some((slot, close, streaming))
    }

    /// Every place is taken and a connection from `ip` waits: ask a
    /// connection of the address holding the most to close, if it holds at
    /// least two more than `ip` (so each address's share evens out: a few
    /// addresses holding every connection open cannot keep a newcomer
    /// out): its oldest that is not streaming a download, or its oldest
    /// if all are. Whether one was asked.
    fn make_room_for(&self, ip: IpAddr) -> bool {
        let mine = self.held_by(&peer_key(ip));
        let t = self.inner.borrow();
        let Some(hog) = t.per_ip.values().max_by_key(|v| v.len()) else {
            return false;
        };
        if hog.len() < mine + 2 {
            return false;
        }
        let victim = hog.iter().find(|p| !p.streaming.get()).unwrap_or(&hog[0]);
        victim.close.notify_one();
        true
    }

    /// What becomes of a newcomer from `ip` when every place is taken.
    pub fn when_full(&self, ip: IpAddr) -> WhenFull {
        if self.make_room_for(ip) {
            WhenFull::MadeRoom
        } else if ip.is_loopback() || self.held_by(&peer_key(ip)) == 0 {
            // Loopback (a reverse proxy on the box brings everyone from
            // there) and a first connection wait for a place, served over
            // the cap.
            WhenFull::Spare
        } else {
            WhenFull::Refuse
        }
    }
}

/// See [`Conns::when_full`].
#[derive(Debug, PartialEq)]
pub enum WhenFull {
    /// The address holding the most was asked to give one back.
    MadeRoom,
    /// Served over the cap, within [`crate::transport::serve::SPARE`].
    Spare,
    /// The newcomer's address already holds about as many as any other:
    /// closed at once, rather than left in the backlog ahead of others.
    Refuse,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_server_makes_room_from_the_address_holding_the_most() {
        let conns = Rc::new(Conns::default());
        let hog: IpAddr = "10.9.0.2".parse().unwrap();
        let other: IpAddr = "10.9.0.3".parse().unwrap();
        let newcomer: IpAddr = "10.9.0.9".parse().unwrap();
        let mut held: Vec<_> = (0..3).map(|_| conns.take(hog, 16).unwrap()).collect();
        held.push(conns.take(other, 16).unwrap());
        assert_eq!(conns.total(), 4);
        // The hog's oldest connection is asked to close, no other.
        assert!(conns.make_room_for(newcomer));
        let asked = |i: usize| {
            let n = held[i].1.notified();
            tokio::pin!(n);
            n.as_mut().enable()
        };
        assert!(asked(0), "the oldest of the address holding the most");
        assert!(!asked(1) && !asked(2) && !asked(3));
        // Shares even out: an address does not take from one holding
        // only one more than itself.
        held.remove(0);
        held.push(conns.take(newcomer, 16).unwrap());
        assert!(!conns.make_room_for(other), "2 against 1: even enough");
        // Shares even: an address holding some is refused at once.
        assert_eq!(conns.when_full(other), WhenFull::Refuse);
        // Every address holds one: a first connection from a new address
        // (or one from loopback) is served over the cap.
        let even = Rc::new(Conns::default());
        let _one: Vec<_> = [hog, other, newcomer]
            .iter()
            .map(|ip| even.take(*ip, 16).unwrap())
            .collect();
        assert_eq!(even.when_full(hog), WhenFull::Refuse);
        assert_eq!(
            even.when_full("10.9.0.77".parse().unwrap()),
            WhenFull::Spare
        );
        assert_eq!(
            even.when_full("127.0.0.1".parse().unwrap()),
            WhenFull::Spare
        );
        // The per-address cap still holds; an IPv6 /64 is one address.
        let v6 = |i: u16| IpAddr::from([0xfd00, 0, 0, 1, 0, 0, 0, i]);
        assert!(conns.take(v6(1), 1).is_some_and(|s| {
            held.push(s);
            true
        }));
        assert!(conns.take(v6(2), 1).is_none());
        drop(held);
        assert_eq!(conns.total(), 0);
        assert!(conns.inner.borrow().per_ip.is_empty());
    }

    #[test]
    fn room_is_made_from_an_idle_connection_before_a_download() {
        let conns = Rc::new(Conns::default());
        let hog: IpAddr = "10.9.0.2".parse().unwrap();
        let newcomer: IpAddr = "10.9.0.9".parse().unwrap();
        let held: Vec<_> = (0..3).map(|_| conns.take(hog, 16).unwrap()).collect();
        let asked = |i: usize| {
            let n = held[i].1.notified();
            tokio::pin!(n);
            n.as_mut().enable()
        };
        // The oldest two are downloading: the third, idle, goes.
        held[0].2.set(true);
        held[1].2.set(true);
        assert!(conns.make_room_for(newcomer));
        assert!(!asked(0) && !asked(1) && asked(2));
        // All downloading: the oldest goes.
        held[2].2.set(true);
        assert!(conns.make_room_for(newcomer));
        assert!(asked(0) && !asked(1) && !asked(2));
    }
}
