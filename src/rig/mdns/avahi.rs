//! Registering the services with avahi-daemon over its D-Bus API
//! (`org.freedesktop.Avahi.Server.EntryGroupNew`, then `AddService` for
//! each service and `Commit` on the entry group). avahi answers the mDNS
//! queries, under its own host name and on every interface it manages.
//! avahi frees the group when our connection closes, so a crash withdraws
//! the services by itself. A name collision (another box announcing the
//! same instance name) is resolved with avahi's own alternative name
//! ("name #2").

use super::{Announcement, Backend};
use zbus::blocking::{Connection, Proxy};
use zbus::zvariant::OwnedObjectPath;

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

/// Whether avahi-daemon is reachable and running.
pub fn available() -> bool {
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
    /// Register `a`; fails when avahi-daemon is not there or refuses.
    pub fn register(a: &Announcement) -> zbus::Result<Self> {
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
        matches!(
            self.group.call::<_, _, i32>("GetState", &()),
            Ok(REGISTERING) | Ok(ESTABLISHED)
        )
    }

    fn withdraw(self: Box<Self>) {
        let _ = self.group.call::<_, _, ()>("Free", &());
    }
}
