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

/// How long one exchange with the system bus may take. zbus's blocking
/// calls have no deadline of their own: a bus that accepts and never
/// answers (a hung or overloaded dbus-daemon) held `p4-mdns` for ever,
/// so `auto` never fell back to the builtin responder, nothing was
/// announced and nothing said so (tester ag AG14).
const DBUS_WAIT: Duration = Duration::from_secs(5);

/// Whether an exchange with the bus is still under way (one that timed
/// out may never return: the next ones are not started beside it).
static IN_FLIGHT: AtomicBool = AtomicBool::new(false);

/// `f` on a thread of its own, waited for at most [`DBUS_WAIT`]; `None`
/// when it did not end in time, or one before it is still stuck. At most
/// one such thread is ever left waiting on a silent bus.
fn bounded<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    if IN_FLIGHT.swap(true, Ordering::SeqCst) {
        return None;
    }
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let spawned = std::thread::Builder::new()
        .stack_size(crate::rt::THREAD_STACK)
        .name("p4-dbus".into())
        .spawn(move || {
            let r = f();
            IN_FLIGHT.store(false, Ordering::SeqCst);
            let _ = tx.send(r);
        });
    if spawned.is_err() {
        IN_FLIGHT.store(false, Ordering::SeqCst);
        return None;
    }
    rx.recv_timeout(DBUS_WAIT).ok()
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
    bounded(available_now).unwrap_or(false)
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
}

impl Avahi {
    /// Register `a`; fails when avahi-daemon is not there, refuses, or
    /// the bus does not answer within [`DBUS_WAIT`].
    pub fn register(a: &Announcement) -> zbus::Result<Self> {
        let a = a.clone();
        bounded(move || Self::register_now(&a)).unwrap_or_else(|| {
            Err(zbus::Error::Failure(format!(
                "the system bus did not answer within {} s",
                DBUS_WAIT.as_secs()
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
                    return Ok(Avahi { _conn: conn, group });
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
        bounded(move || {
            matches!(
                group.call::<_, _, i32>("GetState", &()),
                Ok(REGISTERING) | Ok(ESTABLISHED)
            )
        })
        .unwrap_or(false)
    }

    fn withdraw(self: Box<Self>) {
        let group = self.group.clone();
        let _ = bounded(move || group.call::<_, _, ()>("Free", &()));
    }
}
