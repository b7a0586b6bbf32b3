//! Registering the services with avahi-daemon over its D-Bus API
//! (`org.freedesktop.Avahi.Server.EntryGroupNew`, then `AddService` for
//! each service and `Commit` on the entry group). avahi answers the mDNS
//! queries, under its own host name and on every interface it manages.
//! avahi frees the group when our connection closes, so a crash withdraws
//! the services by itself. A name collision (another box announcing the
//! same instance name) is resolved with avahi's own alternative name
//! ("name #2").

use super::{Announcement, Backend};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use zbus::blocking::{Connection, Proxy};
use zbus::zvariant::OwnedObjectPath;

/// How long a check or a withdrawal on the system bus may take. zbus's
/// blocking calls have no deadline of their own (zbus 4): a bus that
/// accepts and never answers (a hung or overloaded dbus-daemon) held
/// `p4-mdns` for ever, so `auto` never fell back to the builtin responder,
/// nothing was announced and nothing said so (tester ag AG14).
const DBUS_WAIT: Duration = Duration::from_secs(5);
/// How long a whole registration may take: it waits up to ~3 s for avahi
/// to settle each round, and a name collision takes another round (review
/// aj AJ6: 5 s cut a working avahi short, and `auto` flapped).
const REGISTER_WAIT: Duration = Duration::from_secs(20);
/// Checks in a row that got no answer before a registration counts as
/// gone: one slow answer is no reason to tear it down (review aj AJ6).
const UNANSWERED_CHECKS: u8 = 3;

/// Whether an exchange with the bus is still under way (one that timed
/// out may never return: the next ones are not started beside it).
static IN_FLIGHT: AtomicBool = AtomicBool::new(false);

/// `f` on a thread of its own, waited for at most `wait`; `None` when it
/// did not end in time, or one before it is still stuck. At most one such
/// thread is ever left waiting on a silent bus.
fn bounded<T: Send + 'static>(wait: Duration, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    /// Clears [`IN_FLIGHT`] when the exchange ends, also by a panic (which
    /// would otherwise have shut the bus out for the rest of the run).
    struct Done;
    impl Drop for Done {
        fn drop(&mut self) {
            IN_FLIGHT.store(false, Ordering::SeqCst);
        }
    }
    if IN_FLIGHT.swap(true, Ordering::SeqCst) {
        return None;
    }
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let spawned = std::thread::Builder::new()
        .stack_size(crate::rt::THREAD_STACK)
        .name("p4-dbus".into())
        .spawn(move || {
            let done = Done;
            let r = f();
            drop(done);
            let _ = tx.send(r);
        });
    if spawned.is_err() {
        IN_FLIGHT.store(false, Ordering::SeqCst);
        return None;
    }
    rx.recv_timeout(wait).ok()
}

const DEST: &str = "org.freedesktop.Avahi";
const SERVER: &str = "org.freedesktop.Avahi.Server";
const GROUP: &str = "org.freedesktop.Avahi.EntryGroup";
/// avahi's AVAHI_IF_UNSPEC and AVAHI_PROTO_UNSPEC.
const UNSPEC: i32 = -1;
/// Entry group states (avahi-common/defs.h).
const REGISTERING: i32 = 1;
const ESTABLISHED: i32 = 2;
const COLLISION: i32 = 3;
/// Server state AVAHI_SERVER_RUNNING.
const SERVER_RUNNING: i32 = 2;

/// Whether avahi-daemon is reachable and running (and answers within
/// [`DBUS_WAIT`]).
pub fn available() -> bool {
    bounded(DBUS_WAIT, available_now).unwrap_or(false)
}

fn available_now() -> bool {
    let Ok(conn) = Connection::system() else {
        return false;
    };
    server(&conn)
        .and_then(|s| s.call::<_, _, i32>("GetState", &()))
        .is_ok_and(|st| st == SERVER_RUNNING)
}

fn server(conn: &Connection) -> zbus::Result<Proxy<'static>> {
    Proxy::new(conn, DEST, "/", SERVER)
}

/// Services registered with avahi-daemon.
pub struct Avahi {
    _conn: Connection,
    group: Proxy<'static>,
    /// Checks in a row the bus did not answer in time.
    unanswered: u8,
}

impl Avahi {
    /// Register `a`; fails when avahi-daemon is not there, refuses, or
    /// the bus does not answer within [`DBUS_WAIT`].
    pub fn register(a: &Announcement) -> zbus::Result<Self> {
        // A bus that does not answer is found out in DBUS_WAIT, not in
        // the registration's longer wait.
        match bounded(DBUS_WAIT, available_now) {
            None => {
                return Err(zbus::Error::Failure(format!(
                    "the system bus did not answer within {} s",
                    DBUS_WAIT.as_secs()
                )))
            }
            Some(false) => {
                return Err(zbus::Error::Failure(
                    "avahi-daemon is not reachable or not running".into(),
                ))
            }
            Some(true) => {}
        }
        let a = a.clone();
        bounded(REGISTER_WAIT, move || Self::register_now(&a)).unwrap_or_else(|| {
            Err(zbus::Error::Failure(format!(
                "avahi-daemon did not finish registering within {} s",
                REGISTER_WAIT.as_secs()
            )))
        })
    }

    fn register_now(a: &Announcement) -> zbus::Result<Self> {
        let conn = Connection::system()?;
        let srv = server(&conn)?;
        let st: i32 = srv.call("GetState", &())?;
        if st != SERVER_RUNNING {
            return Err(zbus::Error::Failure(format!(
                "avahi-daemon is not running (state {st})"
            )));
        }
        let path: OwnedObjectPath = srv.call("EntryGroupNew", &())?;
        let group = Proxy::new_owned(conn.clone(), DEST, path, GROUP)?;
        let mut name = a.name.clone();
        for _ in 0..8 {
            for s in &a.services {
                let txt: Vec<Vec<u8>> = s
                    .txt
                    .iter()
                    .map(|(k, v)| format!("{k}={v}").into_bytes())
                    .collect();
                group.call::<_, _, ()>(
                    "AddService",
                    &(UNSPEC, UNSPEC, 0u32, &name, s.kind, "", "", s.port, txt),
                )?;
            }
            group.call::<_, _, ()>("Commit", &())?;
            match wait_settled(&group)? {
                COLLISION => {
                    let alt: String = srv.call("GetAlternativeServiceName", &(&name,))?;
                    log::warn!("discovery: the name {name:?} is taken on the LAN; using {alt:?}");
                    name = alt;
                    group.call::<_, _, ()>("Reset", &())?;
                }
                _ => {
                    return Ok(Avahi {
                        _conn: conn,
                        group,
                        unanswered: 0,
                    });
                }
            }
        }
        Err(zbus::Error::Failure("no free service name".into()))
    }
}

/// Wait (at most ~3 s) until the group leaves "registering".
fn wait_settled(group: &Proxy<'_>) -> zbus::Result<i32> {
    for _ in 0..60 {
        let st: i32 = group.call("GetState", &())?;
        if st != REGISTERING {
            return Ok(st);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Ok(REGISTERING)
}

impl Backend for Avahi {
    fn alive(&mut self) -> bool {
        let group = self.group.clone();
        let state = bounded(DBUS_WAIT, move || {
            matches!(
                group.call::<_, _, i32>("GetState", &()),
                Ok(REGISTERING) | Ok(ESTABLISHED)
            )
        });
        match state {
            Some(alive) => {
                self.unanswered = 0;
                alive
            }
            // No answer is not "gone": only several in a row are.
            None => {
                self.unanswered = self.unanswered.saturating_add(1);
                self.unanswered < UNANSWERED_CHECKS
            }
        }
    }

    fn withdraw(self: Box<Self>) {
        let group = self.group.clone();
        let _ = bounded(DBUS_WAIT, move || group.call::<_, _, ()>("Free", &()));
    }
}
