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
    /// Set while it answers a request (from its head until its answer is
    /// sent or dropped).
    answering: Rc<Cell<bool>>,
    /// Asked to close (to make room): no longer counted or chosen.
    asked: Cell<bool>,
}

impl Place {
    fn ask_to_close(&self) {
        self.asked.set(true);
        self.close.notify_one();
    }
}

/// What a connection gets with its place.
pub struct Taken {
    /// The place itself, given back when dropped.
    pub slot: Slot,
    /// Asks the connection to close.
    pub close: Rc<tokio::sync::Notify>,
    /// Where it says how it is getting on.
    pub flags: Flags,
}

/// Where a connection says how it is getting on.
pub struct Flags {
    /// Set while it streams an answer (see [`Place::streaming`]).
    pub streaming: Rc<Cell<bool>>,
    /// Set while it answers a request (from the request's head until the
    /// answer is sent or dropped): a connection that is not waits for a
    /// head, its first or the next on a kept-alive connection.
    pub answering: Rc<Cell<bool>>,
}

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

    /// A place for a connection from `ip`; `None` when `ip` already has
    /// `max_per_ip` (loopback excepted) that are each answering a request.
    ///
    /// At the cap, the oldest of the address's connections that is waiting
    /// for a request head (its first, or the next on a kept-alive
    /// connection) is asked to close and gives its place. An IPv6 /64 is
    /// one address here, and a venue's Wi-Fi is one /64: one guest holding
    /// 16 connections open with half-sent heads kept every other IPv6
    /// client there from the UI (tester x: 40 of 40 refused), and so did 16
    /// kept alive with a request every few seconds (review y). A client's
    /// request is safe from its head to its answer; closing its idle
    /// kept-alive connection costs it a new one.
    pub fn take(self: &Rc<Self>, ip: IpAddr, max_per_ip: usize) -> Option<Taken> {
        let key = peer_key(ip);
        let mut t = self.inner.borrow_mut();
        let id = t.next_id;
        let v = t.per_ip.entry(key).or_default();
        let open = v.iter().filter(|p| !p.asked.get()).count();
        if !ip.is_loopback() && open >= max_per_ip {
            match v.iter().find(|p| !p.asked.get() && !p.answering.get()) {
                Some(waiting) => waiting.ask_to_close(),
                None => {
                    if v.is_empty() {
                        t.per_ip.remove(&key);
                    }
                    return None;
                }
            }
        }
        let close = Rc::new(tokio::sync::Notify::new());
        let streaming = Rc::new(Cell::new(false));
        let answering = Rc::new(Cell::new(false));
        v.push(Place {
            id,
            close: close.clone(),
            streaming: streaming.clone(),
            answering: answering.clone(),
            asked: Cell::new(false),
        });
        t.next_id += 1;
        t.total += 1;
        let slot = Slot {
            conns: self.clone(),
            key,
            id,
        };
        Some(Taken {
            slot,
            close,
            flags: Flags {
                streaming,
                answering,
            },
        })
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
        let open = || hog.iter().filter(|p| !p.asked.get());
        // One waiting for a request first, then one answering a small one,
        // then a download (review z: one in flight could be cut).
        let Some(victim) = open()
            .find(|p| !p.answering.get())
            .or_else(|| open().find(|p| !p.streaming.get()))
            .or_else(|| open().next())
        else {
            return false;
        };
        victim.ask_to_close();
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
            let n = held[i].close.notified();
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
            s.flags.answering.set(true);
            held.push(s);
            true
        }));
        assert!(conns.take(v6(2), 1).is_none());
        drop(held);
        assert_eq!(conns.total(), 0);
        assert!(conns.inner.borrow().per_ip.is_empty());
    }

    #[test]
    fn at_its_cap_an_address_gives_up_a_connection_that_sent_no_request() {
        let conns = Rc::new(Conns::default());
        let v6 = |i: u16| IpAddr::from([0xfd00, 0, 0, 9, 0, 0, 0, i]);
        // A guest holds its /64's 4 places with half-sent heads.
        let guest: Vec<_> = (0..4)
            .map(|i| conns.take(v6(0x66 + i), 4).unwrap())
            .collect();
        let asked = |t: &Taken| {
            let n = t.close.notified();
            tokio::pin!(n);
            n.as_mut().enable()
        };
        // The operator, from another address of the /64, gets a place:
        // the guest's oldest is asked to close.
        let operator = conns.take(v6(1), 4).expect("a place");
        assert!(asked(&guest[0]) && !asked(&guest[1]));
        operator.flags.answering.set(true);
        // A burst of newcomers before any closed connection is gone: each
        // takes the place of another silent one, never of the operator's,
        // and none once every open one has sent a request.
        let burst: Vec<_> = (0..3).map_while(|i| conns.take(v6(0x80 + i), 4)).collect();
        assert_eq!(burst.len(), 3);
        assert!(asked(&guest[1]) && asked(&guest[2]) && asked(&guest[3]));
        assert!(!asked(&operator));
        for b in &burst {
            b.flags.answering.set(true);
        }
        assert!(conns.take(v6(0x90), 4).is_none());
        assert!(!asked(&operator));
        // Another address's share is its own.
        assert!(conns.take("192.0.2.5".parse().unwrap(), 4).is_some());
    }

    #[test]
    fn room_is_made_from_an_idle_connection_before_a_download() {
        let conns = Rc::new(Conns::default());
        let hog: IpAddr = "10.9.0.2".parse().unwrap();
        let newcomer: IpAddr = "10.9.0.9".parse().unwrap();
        let held: Vec<_> = (0..3).map(|_| conns.take(hog, 16).unwrap()).collect();
        let asked = |i: usize| {
            let n = held[i].close.notified();
            tokio::pin!(n);
            n.as_mut().enable()
        };
        // The oldest two are downloading: the third, idle, goes.
        for h in &held {
            h.flags.answering.set(true);
        }
        held[0].flags.streaming.set(true);
        held[1].flags.streaming.set(true);
        held[2].flags.answering.set(false);
        assert!(conns.make_room_for(newcomer));
        assert!(!asked(0) && !asked(1) && asked(2));
        // All downloading: the oldest goes.
        held[2].flags.streaming.set(true);
        assert!(conns.make_room_for(newcomer));
        assert!(asked(0) && !asked(1) && !asked(2));
        // One waiting for a request goes before an older one answering a
        // small request (review z).
        let conns = Rc::new(Conns::default());
        let held: Vec<_> = (0..3).map(|_| conns.take(hog, 16).unwrap()).collect();
        held[0].flags.answering.set(true);
        assert!(conns.make_room_for(newcomer));
        let asked = |i: usize| {
            let n = held[i].close.notified();
            tokio::pin!(n);
            n.as_mut().enable()
        };
        assert!(!asked(0) && asked(1) && !asked(2));
    }
}
