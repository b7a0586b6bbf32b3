//! Who holds the WebSocket's places, and the budget of wrong control
//! tokens: shared by the acceptor (which admits and checks `?token=`) and
//! the broadcaster (which releases and checks `auth` messages). The
//! OSCQuery LISTEN port counts its clients with the same [`Registry`].

use super::guesses::Guesses;
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The address as the IP it is (an IPv4 client of a dual-stack socket
/// shows up as `::ffff:a.b.c.d`).
pub fn canonical_ip(peer: &SocketAddr) -> IpAddr {
    peer.ip().to_canonical()
}

/// Whose share of a per-address cap or budget a peer at `ip` uses: an IPv4
/// address as such (also when a dual-stack socket shows it as
/// `::ffff:a.b.c.d`), an IPv6 address by its /64, which is one host's or
/// one link's: a host may take any number of addresses in it (privacy
/// addresses), so per address it could give itself as many shares as it
/// liked.
pub fn peer_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::from([s[0], s[1], s[2], s[3], 0, 0, 0, 0])
        }
        v4 => v4,
    }
}

/// Places of `max` that clients without a privilege (neither on loopback
/// nor holding the token) can never take: a quarter. Watchers from a few
/// addresses can fill every other place, and then still neither the
/// operator at the box nor a phone with the token is turned away.
pub fn kept_places(max: usize) -> usize {
    max / 4
}

/// One admitted client's place in a [`Registry`]: what its owner gives
/// back with [`Registry::release`], and how it learns that the place was
/// given to a newcomer ([`Registry::was_evicted`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PlaceId(u64);

/// A newcomer was let in by closing another address's client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MadeRoom {
    /// The address of the client that gives its place.
    pub from: IpAddr,
    /// How many places its address ([`peer_key`]) held before.
    pub held: usize,
}

/// What [`Registry::admit`] gives a client it lets in.
#[derive(Debug)]
pub struct Admitted {
    /// Its place.
    pub place: PlaceId,
    /// Set when another address's oldest client gave its place for it.
    pub made_room: Option<MadeRoom>,
}

/// One admitted place.
#[derive(Debug)]
struct Place {
    ip: IpAddr,
    privileged: bool,
}

/// Connected clients, in all, without a privilege and per address
/// ([`peer_key`]), and which of them may be closed for a newcomer.
#[derive(Debug, Default)]
struct Counts {
    total: usize,
    unprivileged: usize,
    per_ip: HashMap<IpAddr, usize>,
    next_id: u64,
    /// Every admitted place not yet released or evicted (at most `max`).
    places: HashMap<PlaceId, Place>,
    /// Per address, oldest first, the places that may be closed to make
    /// room: without a privilege and not from loopback (the operator's
    /// own box, or a reverse proxy there that limits its clients itself).
    evictable: HashMap<IpAddr, VecDeque<PlaceId>>,
    /// Places given to a newcomer whose client is still open: its owner
    /// closes it ([`Registry::was_evicted`]) or releases it, and either
    /// takes it off here. Each is a client an owner still holds, so there
    /// are never more than the owners hold.
    evicted: Vec<PlaceId>,
}

impl Counts {
    /// Why an unprivileged (or, for the total, any) newcomer finds no free
    /// place; `None` when there is one.
    fn full(&self, privileged: bool, max: usize) -> Option<String> {
        if self.total >= max {
            return Some(format!("already {max} clients (ws.max-clients)"));
        }
        let open = max - kept_places(max);
        if !privileged && self.unprivileged >= open {
            return Some(format!(
                "already {open} clients without the token; the other {} places of ws.max-clients are kept for clients on loopback or with the token",
                max - open
            ));
        }
        None
    }

    /// The address holding the most evictable places gives its oldest,
    /// if it holds at least two more than `key` does (so each address's
    /// share evens out: with N addresses each keeps about open/N, and the
    /// move is never undone by the loser coming back). Ties: the address
    /// whose oldest came first. The place is taken off the counts here.
    fn make_room_for(&mut self, key: IpAddr) -> Option<MadeRoom> {
        let mine = self.evictable.get(&key).map_or(0, VecDeque::len);
        let ids = self
            .evictable
            .values()
            .max_by_key(|ids| (ids.len(), std::cmp::Reverse(ids.front().map(|p| p.0))))?;
        let held = ids.len();
        if held < mine + 2 {
            return None;
        }
        let victim = *ids.front()?;
        let from = self.places.get(&victim)?.ip;
        self.forget(victim);
        self.evicted.push(victim);
        Some(MadeRoom { from, held })
    }

    /// Count a new place in.
    fn insert(&mut self, ip: IpAddr, privileged: bool) -> PlaceId {
        let id = PlaceId(self.next_id);
        self.next_id += 1;
        let key = peer_key(ip);
        self.total += 1;
        self.unprivileged += !privileged as usize;
        *self.per_ip.entry(key).or_insert(0) += 1;
        if !privileged && !ip.is_loopback() {
            self.evictable.entry(key).or_default().push_back(id);
        }
        self.places.insert(id, Place { ip, privileged });
        id
    }

    /// Count a place out, if it is still counted (not released or evicted
    /// before): a place is given back exactly once, however its client's
    /// end and an eviction cross.
    fn forget(&mut self, id: PlaceId) {
        let Some(p) = self.places.remove(&id) else {
            return;
        };
        let key = peer_key(p.ip);
        self.total -= 1;
        if !p.privileged {
            self.unprivileged -= 1;
        }
        if let Some(n) = self.per_ip.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&key);
            }
        }
        self.unlist(key, id);
    }

    /// Take `id` off its address's evictable places.
    fn unlist(&mut self, key: IpAddr, id: PlaceId) {
        if let Some(ids) = self.evictable.get_mut(&key) {
            ids.retain(|p| *p != id);
            if ids.is_empty() {
                self.evictable.remove(&key);
            }
        }
    }
}

/// Connected clients, in all, without a privilege and per address; shared
/// by the acceptor (which admits) and the broadcaster (which releases).
/// Also the budget of wrong control tokens per address, which both spend:
/// the acceptor for `?token=`, the broadcaster for `auth` messages.
#[derive(Debug, Default)]
pub struct Registry {
    inner: Mutex<Counts>,
    guesses: Mutex<Guesses>,
}

impl Registry {
    /// Count a client from `ip` in, unless that passes a cap. A client
    /// with a `privileged` place (on loopback, or with the token when it
    /// connected) may take any place and is not held to `max_per_ip`
    /// (watchers from one IPv6 /64, which on a venue's Wi-Fi is every
    /// machine, would otherwise keep the operator's phone out); others
    /// leave [`kept_places`] free.
    ///
    /// When those open places (or all) are taken, an unprivileged newcomer
    /// still gets one if some address holds at least two more of them than
    /// the newcomer's: that address's oldest client gives its place (see
    /// [`Admitted::made_room`]; its owner learns it from
    /// [`Registry::was_evicted`]). Three hosts holding eight idle watchers
    /// each kept every other watcher of the venue out for as long as they
    /// liked (tester x #9). Privileged and loopback places are never given.
    pub fn admit(
        &self,
        ip: IpAddr,
        privileged: bool,
        max: usize,
        max_per_ip: usize,
    ) -> Result<Admitted, String> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let key = peer_key(ip);
        let n = g.per_ip.get(&key).copied().unwrap_or(0);
        let capped = !ip.is_loopback() && !privileged && n >= max_per_ip;
        let full = g.full(privileged, max);
        if let Some(why) = &full {
            if privileged || capped {
                return Err(why.clone());
            }
        }
        if capped {
            let whose = if key == ip.to_canonical() {
                ip.to_string()
            } else {
                format!("{key}/64")
            };
            return Err(format!(
                "already {max_per_ip} clients from {whose} (ws.max-clients-per-ip)"
            ));
        }
        let made_room = match full {
            None => None,
            Some(why) => Some(g.make_room_for(key).ok_or(why)?),
        };
        let place = g.insert(ip, privileged);
        Ok(Admitted { place, made_room })
    }

    /// Count a client out. A place already given to a newcomer is not
    /// counted again, so a client that ends by itself just as it is chosen
    /// to make room gives its place back once.
    pub fn release(&self, place: PlaceId) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.forget(place);
        g.evicted.retain(|p| *p != place);
    }

    /// The client of `place` proved it holds the token (an `auth` message):
    /// its place becomes a privileged one, never given to a newcomer (the
    /// operator's phone that connected first and authenticated after must
    /// not be closed for a watcher).
    pub fn promote(&self, place: PlaceId) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let Some(p) = g.places.get_mut(&place) else {
            return;
        };
        if p.privileged {
            return;
        }
        p.privileged = true;
        let key = peer_key(p.ip);
        g.unprivileged -= 1;
        g.unlist(key, place);
    }

    /// Whether any place was given to a newcomer and its client is still
    /// open (one lock; the owner looks at its clients only then).
    pub fn evictions_pending(&self) -> bool {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        !g.evicted.is_empty()
    }

    /// Whether `place` was given to a newcomer: its owner must close the
    /// client, and need not [`release`](Registry::release) it (doing so
    /// anyway is harmless).
    pub fn was_evicted(&self, place: PlaceId) -> bool {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let before = g.evicted.len();
        g.evicted.retain(|p| *p != place);
        g.evicted.len() != before
    }

    /// Recount everything from the places themselves and compare.
    #[cfg(test)]
    fn assert_consistent(&self) {
        let g = self.inner.lock().unwrap();
        assert_eq!(g.total, g.places.len());
        let unprivileged = g.places.values().filter(|p| !p.privileged).count();
        assert_eq!(g.unprivileged, unprivileged);
        let mut per_ip = HashMap::new();
        for p in g.places.values() {
            *per_ip.entry(peer_key(p.ip)).or_insert(0) += 1;
        }
        assert_eq!(g.per_ip, per_ip);
        for (key, ids) in &g.evictable {
            assert!(!ids.is_empty());
            assert!(ids.iter().zip(ids.iter().skip(1)).all(|(a, b)| a.0 < b.0));
            for id in ids {
                let p = &g.places[id];
                assert!(!p.privileged && !p.ip.is_loopback() && peer_key(p.ip) == *key);
            }
        }
        let listed: usize = g.evictable.values().map(VecDeque::len).sum();
        let should = g
            .places
            .values()
            .filter(|p| !p.privileged && !p.ip.is_loopback())
            .count();
        assert_eq!(listed, should);
        assert!(g.evicted.iter().all(|id| !g.places.contains_key(id)));
    }

    /// Connected clients.
    pub fn total(&self) -> usize {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).total
    }

    /// Whether `token` from `ip` is the control token, checked only while
    /// `ip`'s budget of wrong tokens ([`GUESS_BURST`](super::guesses::GUESS_BURST), one back every
    /// [`GUESS_REFILL`](super::guesses::GUESS_REFILL)) is not spent: otherwise how long until one try is
    /// back. Nothing is checked then, so an address that guesses learns
    /// nothing faster than the budget lets it, however many connections it
    /// opens; other addresses keep their own budgets. Loopback has none,
    /// as it has no per-address cap: behind a reverse proxy on the box
    /// (`trust-loopback = false`) every client would share one budget, and
    /// one guesser could keep all of them from authenticating; the proxy
    /// is the place to limit them.
    pub fn check_token(
        &self,
        ip: IpAddr,
        now: Instant,
        matches: impl FnOnce() -> bool,
    ) -> Result<bool, Duration> {
        if ip.is_loopback() {
            return Ok(matches());
        }
        let mut g = self.guesses.lock().unwrap_or_else(|e| e.into_inner());
        g.check(peer_key(ip), now, matches)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::ws::guesses::{GUESS_BURST, GUESS_REFILL};

    fn v4(last: u8) -> IpAddr {
        IpAddr::from([10, 9, 0, last])
    }

    const LO: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    /// Admit and return the place, or panic with the reason.
    fn take(r: &Registry, ip: IpAddr, privileged: bool, max: usize, per_ip: usize) -> PlaceId {
        let a = r.admit(ip, privileged, max, per_ip).unwrap();
        assert!(a.made_room.is_none(), "{a:?}");
        a.place
    }

    #[test]
    fn the_registry_caps_clients_in_all_and_per_address() {
        let r = Registry::default();
        let (a, b) = (v4(1), v4(2));
        let first = take(&r, a, false, 5, 2);
        take(&r, a, false, 5, 2);
        assert!(r.admit(a, false, 5, 2).is_err());
        take(&r, b, false, 5, 2);
        take(&r, LO, true, 5, 2);
        take(&r, LO, true, 5, 2);
        assert!(
            r.admit(LO, true, 5, 2).is_err(),
            "the total cap holds for loopback too"
        );
        r.release(first);
        take(&r, a, false, 5, 2);
        assert_eq!(r.total(), 5);
        r.assert_consistent();
    }

    #[test]
    fn watchers_never_take_the_places_kept_for_the_token() {
        let r = Registry::default();
        let (max, per_ip) = (32, 8);
        assert_eq!(kept_places(max), 8);
        // Three addresses, eight watchers each: the 24 open places.
        for host in 2..=4 {
            for _ in 0..per_ip {
                take(&r, v4(host), false, max, per_ip);
            }
        }
        // One of them asking for more is refused: its own cap.
        assert!(r.admit(v4(2), false, max, per_ip).is_err());
        // The operator on loopback and a phone with the token get in.
        take(&r, LO, true, max, per_ip);
        let phone = take(&r, v4(6), true, max, per_ip);
        // A privileged place going does not free a watcher's: a watcher
        // from a fourth address gets one only by making room.
        r.release(phone);
        let a = r.admit(v4(5), false, max, per_ip).unwrap();
        assert_eq!(a.made_room.map(|m| m.from), Some(v4(2)));
        assert_eq!(r.total(), 25);
        // Privileged clients may fill every place, and then no more.
        for _ in 0..7 {
            take(&r, LO, true, max, per_ip);
        }
        assert_eq!(r.total(), max);
        let why = r.admit(LO, true, max, per_ip).unwrap_err();
        assert!(why.contains("already 32 clients"), "{why}");
        r.assert_consistent();
    }

    #[test]
    fn a_full_server_makes_room_by_closing_the_oldest_of_the_address_holding_the_most() {
        let r = Registry::default();
        let (max, per_ip) = (32, 8);
        let mut places: HashMap<IpAddr, Vec<PlaceId>> = HashMap::new();
        for host in 2..=4 {
            for _ in 0..per_ip {
                let p = take(&r, v4(host), false, max, per_ip);
                places.entry(v4(host)).or_default().push(p);
            }
        }
        // A fourth address's watchers: each time the address holding the
        // most gives its oldest (ties: whose oldest came first), until all
        // four hold six.
        let gives = [2, 3, 4, 2, 3, 4];
        for (k, host) in gives.into_iter().enumerate() {
            let a = r.admit(v4(5), false, max, per_ip).unwrap();
            let made = a.made_room.expect("room made");
            assert_eq!(made.from, v4(host), "newcomer {k}");
            let victim = places.get_mut(&v4(host)).unwrap().remove(0);
            assert!(r.was_evicted(victim), "newcomer {k}");
            assert!(!r.was_evicted(victim), "told once");
            r.assert_consistent();
        }
        assert_eq!(r.total(), 24);
        // Every address holds six: a newcomer from any of them is refused,
        // and nobody is closed.
        for host in 2..=5 {
            let why = r.admit(v4(host), false, max, per_ip).unwrap_err();
            assert!(why.contains("kept for clients on loopback"), "{why}");
        }
        assert!(!r.evictions_pending());
        // A fifth address still gets one.
        let a = r.admit(v4(6), false, max, per_ip).unwrap();
        assert_eq!(a.made_room.map(|m| m.held), Some(6));
        assert!(r.evictions_pending());
        r.assert_consistent();
    }

    #[test]
    fn privileged_and_loopback_places_are_never_given() {
        let r = Registry::default();
        let (max, per_ip) = (8, 8);
        // Watchers on loopback (trust-loopback off: a reverse proxy) and
        // one from the LAN take the six open places; token holders two.
        for _ in 0..5 {
            take(&r, LO, false, max, per_ip);
        }
        take(&r, v4(2), false, max, per_ip);
        take(&r, v4(3), true, max, per_ip);
        take(&r, v4(3), true, max, per_ip);
        // Loopback holds five and the token holders two, yet neither gives.
        let why = r.admit(v4(4), false, max, per_ip).unwrap_err();
        assert!(why.contains("already 8 clients"), "{why}");
        assert!(!r.evictions_pending());
        r.assert_consistent();
    }

    #[test]
    fn a_watcher_that_authenticates_keeps_its_place() {
        let r = Registry::default();
        let (max, per_ip) = (8, 8);
        let operator = take(&r, v4(2), false, max, per_ip);
        take(&r, v4(2), false, max, per_ip);
        take(&r, v4(2), false, max, per_ip);
        r.promote(operator);
        r.promote(operator);
        r.assert_consistent();
        for _ in 0..4 {
            take(&r, v4(3), false, max, per_ip);
        }
        // Open places: 2 of v4(2)'s and 4 of v4(3)'s; the promoted one
        // freed one for v4(3)'s fourth. Newcomers make room from v4(3)
        // twice, then every address holds two open places: even.
        for _ in 0..2 {
            let a = r.admit(v4(4), false, max, per_ip).unwrap();
            assert_eq!(a.made_room.map(|m| m.from), Some(v4(3)));
        }
        assert!(r.admit(v4(4), false, max, per_ip).is_err());
        // v4(2) holds three places, one of them the operator's: it counts
        // as two, and the operator is never chosen.
        assert!(!r.was_evicted(operator));
        assert_eq!(r.total(), 7);
        r.assert_consistent();
    }

    #[test]
    fn a_client_that_ends_as_it_is_chosen_gives_its_place_back_once() {
        let (max, per_ip) = (4, 4);
        // Chosen first, then its own end: release finds it already gone.
        let r = Registry::default();
        let hog: Vec<PlaceId> = (0..3)
            .map(|_| take(&r, v4(2), false, max, per_ip))
            .collect();
        let a = r.admit(v4(3), false, max, per_ip).unwrap();
        assert!(a.made_room.is_some());
        assert_eq!(r.total(), 3);
        r.release(hog[0]);
        r.release(hog[0]);
        assert_eq!(r.total(), 3);
        assert!(!r.evictions_pending(), "its end took it off the list");
        assert!(!r.was_evicted(hog[0]));
        r.assert_consistent();
        // Its own end first, then the newcomer: a free place, no eviction.
        let r = Registry::default();
        let hog: Vec<PlaceId> = (0..3)
            .map(|_| take(&r, v4(2), false, max, per_ip))
            .collect();
        r.release(hog[0]);
        let newcomer = take(&r, v4(3), false, max, per_ip);
        assert_eq!(r.total(), 3);
        // The next one makes room from the others, never the released one.
        let a = r.admit(v4(4), false, max, per_ip).unwrap();
        assert!(a.made_room.is_some());
        assert!(!r.was_evicted(hog[0]) && r.was_evicted(hog[1]));
        for p in [hog[1], hog[2], newcomer, a.place] {
            r.release(p);
        }
        assert_eq!(r.total(), 0);
        r.assert_consistent();
    }

    #[test]
    fn counts_stay_exact_when_admits_evictions_and_releases_race() {
        use std::sync::Arc;
        let r = Arc::new(Registry::default());
        let (max, per_ip) = (16, 6);
        let (tx, rx) = std::sync::mpsc::channel::<PlaceId>();
        // The acceptor: two addresses that hold all they may, newcomers
        // from six others that make room, now and then a token holder.
        let acceptor = {
            let r = r.clone();
            std::thread::spawn(move || {
                let mut made_room = 0;
                for i in 0..20_000u32 {
                    let ip = if i % 4 == 0 {
                        v4(3 + (i / 4 % 6) as u8)
                    } else {
                        v4(1 + (i % 2) as u8)
                    };
                    if let Ok(a) = r.admit(ip, i % 13 == 0, max, per_ip) {
                        made_room += a.made_room.is_some() as u32;
                        tx.send(a.place).unwrap();
                    }
                }
                made_room
            })
        };
        // The owner: closes evicted clients, and clients end by themselves
        // (its oldest, the likeliest to be chosen), some just as they are
        // chosen.
        let mut held: VecDeque<PlaceId> = VecDeque::new();
        let mut k = 0u64;
        loop {
            let done = acceptor.is_finished();
            held.extend(rx.try_iter());
            if r.evictions_pending() {
                held.retain(|p| !r.was_evicted(*p));
            }
            // Keep the server about full, so that newcomers make room.
            k += 1;
            if k.is_multiple_of(3) && held.len() + 2 >= max {
                if let Some(p) = held.pop_front() {
                    r.release(p);
                }
            }
            // Everything sent was received above once the acceptor ended.
            if done {
                break;
            }
        }
        let made_room = acceptor.join().unwrap();
        r.assert_consistent();
        assert!(made_room > 0);
        assert!(r.total() <= max);
        for p in held.drain(..) {
            r.release(p);
        }
        assert_eq!(r.total(), 0);
        assert!(!r.evictions_pending());
        r.assert_consistent();
    }

    #[test]
    fn an_ipv6_host_has_one_share_for_its_whole_64() {
        let r = Registry::default();
        let host = |i: u16| IpAddr::from([0x2001, 0xdb8, 1, 2, 0xa, 0xb, 0xc, i]);
        let first = take(&r, host(0), false, 32, 4);
        for i in 1..4 {
            take(&r, host(i), false, 32, 4);
        }
        let why = r.admit(host(99), false, 32, 4).unwrap_err();
        assert!(why.contains("2001:db8:1:2::/64"), "{why}");
        take(
            &r,
            IpAddr::from([0x2001, 0xdb8, 1, 3, 0, 0, 0, 1]),
            false,
            32,
            4,
        );
        r.release(first);
        take(&r, host(8), false, 32, 4);
        // Another machine on the same Wi-Fi (the same /64) with the token
        // gets in beside the watchers.
        take(&r, host(200), true, 32, 4);
        assert!(r.admit(host(201), false, 32, 4).is_err());
        // IPv4 through a dual-stack socket is the IPv4 address.
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert_eq!(peer_key(mapped), IpAddr::from([10, 1, 2, 3]));
        r.assert_consistent();
    }

    #[test]
    fn wrong_tokens_spend_a_budget_per_address_across_connections() {
        let r = Registry::default();
        let t0 = Instant::now();
        let a = IpAddr::from([10, 9, 0, 2]);
        let b = IpAddr::from([10, 9, 0, 3]);
        for i in 0..GUESS_BURST as usize {
            assert_eq!(r.check_token(a, t0, || false), Ok(false), "guess {i}");
        }
        // Spent: not even the right token is checked (no oracle).
        let mut asked = false;
        let wait = r
            .check_token(a, t0, || {
                asked = true;
                true
            })
            .unwrap_err();
        assert!(!asked && wait == GUESS_REFILL, "{wait:?}");
        // Another address keeps its own budget; the right token is free.
        assert_eq!(r.check_token(b, t0, || true), Ok(true));
        for _ in 0..10 {
            assert_eq!(r.check_token(b, t0, || true), Ok(true));
        }
        // One try comes back per GUESS_REFILL.
        let later = t0 + GUESS_REFILL;
        assert_eq!(r.check_token(a, later, || true), Ok(true));
        assert_eq!(r.check_token(a, later, || false), Ok(false));
        assert!(r.check_token(a, later, || true).is_err());
        // Loopback has no budget (see check_token).
        let lo = IpAddr::from([127, 0, 0, 1]);
        for _ in 0..20 {
            assert_eq!(r.check_token(lo, t0, || false), Ok(false));
        }
        assert_eq!(r.check_token(lo, t0, || true), Ok(true));
        // Privacy addresses of one /64 share a budget.
        let v6 = |i: u16| IpAddr::from([0x2001, 0xdb8, 0, 1, 0, 0, 0, i]);
        for i in 0..GUESS_BURST as u16 {
            assert_eq!(r.check_token(v6(i), t0, || false), Ok(false));
        }
        assert!(r.check_token(v6(1000), t0, || false).is_err());
    }
}
