//! Listening sockets for the UI, the WebSocket, OSCQuery and the OSC input
//! port, bound to the configured address even while the machine does not
//! have it yet.
//!
//! A box bound to its Wi-Fi address (`ws.bind = "10.0.0.5"`) boots before
//! DHCP has given it that address, or restarts while the Wi-Fi is down: the
//! bind failed (EADDRNOTAVAIL), phase4 exited before READY, OSC with it,
//! and systemd gave up after its start limit (tester aa B1). Such an
//! address is bound with `IP_FREEBIND` instead, as systemd's `FreeBind=`
//! does: the port is taken now and answers once the address arrives; a
//! warning says so. Every other bind error is an error, as before.

use std::io;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Mutex;

/// The listeners bound to an address the machine did not have: what each
/// is (`ws`, `http`, ...) and its address. A handful at most, written at
/// start.
static FREEBOUND: Mutex<Vec<(String, SocketAddr)>> = Mutex::new(Vec::new());

/// `what:address` of each listener whose address the machine still does
/// not have, for the health line (review ab: a mistyped address, or one
/// DHCP never gives, left the UI unreachable all show while every health
/// line looked fine, after one warning at start).
pub fn waiting() -> Vec<String> {
    let bound = FREEBOUND.lock().unwrap_or_else(|e| e.into_inner());
    if bound.is_empty() {
        return Vec::new();
    }
    let have = crate::transport::hosts::interface_addresses();
    bound
        .iter()
        // (`::ffff:10.0.0.5` is there once 10.0.0.5 is.)
        .filter(|(_, a)| !have.contains(&a.ip().to_canonical()))
        .map(|(what, a)| format!("{what}:{a}"))
        .collect()
}

/// Pending connections the kernel keeps for a listener (what the standard
/// library asks for).
const BACKLOG: i32 = 128;

/// A TCP listener on `host:port`; `what` names it in the warning.
pub fn tcp(host: &str, port: u16, what: &str) -> io::Result<TcpListener> {
    bind_with(host, port, what, TcpListener::bind, |a| {
        use nix::sys::socket::{listen, Backlog, SockType};
        let fd = freebound(a, SockType::Stream)?;
        listen(&fd, Backlog::new(BACKLOG)?)?;
        Ok(TcpListener::from(fd))
    })
}

/// A UDP socket on `host:port`; `what` names it in the warning.
pub fn udp(host: &str, port: u16, what: &str) -> io::Result<UdpSocket> {
    bind_with(host, port, what, UdpSocket::bind, |a| {
        let fd = freebound(a, nix::sys::socket::SockType::Datagram)?;
        Ok(UdpSocket::from(fd))
    })
}

fn bind_with<T>(
    host: &str,
    port: u16,
    what: &str,
    plain: impl Fn(SocketAddr) -> io::Result<T>,
    free: impl Fn(SocketAddr) -> io::Result<T>,
) -> io::Result<T> {
    // (A host name must resolve now: only an address the machine lacks
    // is bound for later, not a name no DNS server answers for yet.)
    let mut absent = None;
    let mut last = None;
    for a in (host, port).to_socket_addrs()? {
        if let Some(name) = crate::transport::hosts::broadcast_of(a.ip()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} is the broadcast address of {name}: nobody can connect there; bind an address of this machine, or 0.0.0.0",
                    a.ip()
                ),
            ));
        }
        match plain(a) {
            Ok(s) => return Ok(s),
            Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => {
                absent.get_or_insert(a);
            }
            Err(e) => last = Some(e),
        }
    }
    let Some(a) = absent else {
        return Err(last.unwrap_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{host} names no address"),
            )
        }));
    };
    let s = free(a)?;
    log::warn!(
        "{what}: {a} is not an address of this machine yet; bound to it anyway, reachable once the network gives the machine that address (the health line lists it under bind_waiting= until then)"
    );
    FREEBOUND
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((what.to_string(), a));
    Ok(s)
}

/// A socket of `ty` bound to `a` with `IP_FREEBIND` (`IPV6_FREEBIND`).
fn freebound(a: SocketAddr, ty: nix::sys::socket::SockType) -> io::Result<OwnedFd> {
    use nix::sys::socket::{bind, setsockopt, socket, sockopt, AddressFamily, SockFlag};
    use nix::sys::socket::{SockaddrIn, SockaddrIn6};
    let family = if a.is_ipv6() {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    let fd = socket(family, ty, SockFlag::SOCK_CLOEXEC, None)?;
    if ty == nix::sys::socket::SockType::Stream {
        setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    }
    let (level, name) = if a.is_ipv6() {
        (libc::IPPROTO_IPV6, libc::IPV6_FREEBIND)
    } else {
        (libc::IPPROTO_IP, libc::IP_FREEBIND)
    };
    let on: libc::c_int = 1;
    // SAFETY: `fd` is an open socket; the value is a c_int of the size given.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            &on as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    match a {
        SocketAddr::V4(v4) => bind(fd.as_raw_fd(), &SockaddrIn::from(v4))?,
        SocketAddr::V6(v6) => bind(fd.as_raw_fd(), &SockaddrIn6::from(v6))?,
    }
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_this_machine_has_is_bound_as_before() {
        let l = tcp("127.0.0.1", 0, "test").unwrap();
        assert!(l.local_addr().unwrap().ip().is_loopback());
        let u = udp("127.0.0.1", 0, "test").unwrap();
        assert!(u.local_addr().unwrap().ip().is_loopback());
    }

    #[test]
    fn an_address_this_machine_does_not_have_is_bound_for_later() {
        // TEST-NET-3: never an address of this machine.
        let l = tcp("203.0.113.77", 0, "test").unwrap();
        assert_eq!(l.local_addr().unwrap().ip().to_string(), "203.0.113.77");
        let u = udp("203.0.113.77", 0, "test").unwrap();
        assert_eq!(u.local_addr().unwrap().ip().to_string(), "203.0.113.77");
    }

    #[test]
    fn other_errors_stay_errors() {
        let taken = tcp("127.0.0.1", 0, "test").unwrap();
        let port = taken.local_addr().unwrap().port();
        let e = tcp("127.0.0.1", port, "test").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        assert!(tcp("not an address", 1, "test").is_err());
    }
}
