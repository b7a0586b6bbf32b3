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

/// A TCP listener on `host:port`; `what` names it in the warning. The
/// same port of the other address family is held too ([`hold_twin`]).
pub fn tcp(host: &str, port: u16, what: &str) -> io::Result<TcpListener> {
    let l = bind_with(host, port, what, TcpListener::bind, |a| {
        use nix::sys::socket::{listen, Backlog, SockType};
        let fd = freebound(a, SockType::Stream)?;
        listen(&fd, Backlog::new(BACKLOG)?)?;
        Ok(TcpListener::from(fd))
    })?;
    hold_twin(
        &l,
        l.local_addr()?,
        nix::sys::socket::SockType::Stream,
        what,
    )?;
    Ok(l)
}

/// A UDP socket on `host:port`; `what` names it in the warning. The same
/// port of the other address family is held too ([`hold_twin`]).
pub fn udp(host: &str, port: u16, what: &str) -> io::Result<UdpSocket> {
    let s = bind_with(host, port, what, UdpSocket::bind, |a| {
        let fd = freebound(a, nix::sys::socket::SockType::Datagram)?;
        Ok(UdpSocket::from(fd))
    })?;
    hold_twin(
        &s,
        s.local_addr()?,
        nix::sys::socket::SockType::Datagram,
        what,
    )?;
    Ok(s)
}

/// Sockets that hold the other family's side of a port phase4 listens on,
/// for as long as the process runs.
static TWINS: Mutex<Vec<OwnedFd>> = Mutex::new(Vec::new());

/// Hold the other address family's side of `bound`'s port: a listener on
/// 127.0.0.1 or 0.0.0.0 leaves `[::1]:port` and `[::]:port` to anyone, and
/// any local user could listen there and get every client that reaches the
/// machine over IPv6 (`localhost` as `::1`, `box.local`'s AAAA record),
/// with the control token they present (tester ah AH1). The twin is bound
/// and never listens or reads: a TCP client gets "connection refused" at
/// once and tries the address phase4 answers on; a UDP datagram is
/// dropped. Which twin ([`twin_of`]): the other family's `localhost`
/// address for 127.0.0.1 or `::1`, its wildcard for a non-loopback one. A twin someone already
/// holds is a start error, as a taken port is, unless what holds it is
/// only connections closing from before a restart (TIME_WAIT, up to a
/// minute after the bind changed family: review aj AJ2), when it is not
/// held this run and a warning says so; where the machine has no such
/// family, there is nothing to hold.
fn hold_twin(
    sock: &impl std::os::fd::AsFd,
    bound: SocketAddr,
    ty: nix::sys::socket::SockType,
    what: &str,
) -> io::Result<()> {
    use nix::sys::socket::{
        bind, getsockopt, setsockopt, socket, sockopt, AddressFamily, SockFlag,
    };
    use nix::sys::socket::{SockaddrIn, SockaddrIn6};
    let port = bound.port();
    // `::` takes both families unless IPV6_V6ONLY is on (the
    // `net.ipv6.bindv6only` sysctl sets it by default: review aj AJ4).
    let dual = bound.is_ipv6()
        && bound.ip().is_unspecified()
        && !getsockopt(sock, sockopt::Ipv6V6Only).unwrap_or(false);
    if dual {
        return Ok(());
    }
    let Some(twin) = twin_of(bound) else {
        return Ok(());
    };
    let family = if twin.is_ipv6() {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    let fd = match socket(family, ty, SockFlag::SOCK_CLOEXEC, None) {
        Ok(fd) => fd,
        // No IPv6 (or IPv4) on this machine: nobody can listen there.
        Err(nix::errno::Errno::EAFNOSUPPORT) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if twin.is_ipv6() {
        setsockopt(&fd, sockopt::Ipv6V6Only, &true)?;
    }
    if ty == nix::sys::socket::SockType::Datagram {
        // Whatever arrives waits in the smallest buffer until dropped.
        let _ = setsockopt(&fd, sockopt::RcvBuf, &0);
    }
    let r = match twin {
        SocketAddr::V4(v4) => bind(fd.as_raw_fd(), &SockaddrIn::from(v4)),
        SocketAddr::V6(v6) => bind(fd.as_raw_fd(), &SockaddrIn6::from(v6)),
    };
    match r {
        Ok(()) => {
            TWINS.lock().unwrap_or_else(|e| e.into_inner()).push(fd);
            Ok(())
        }
        Err(nix::errno::Errno::EADDRINUSE)
            if ty == nix::sys::socket::SockType::Stream && only_closing(twin) =>
        {
            log::warn!(
                "{what}: {twin} is still held by connections closing from before this start (TIME_WAIT, at most a minute); it is not held for phase4 this run"
            );
            Ok(())
        }
        Err(nix::errno::Errno::EADDRINUSE) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!(
                "{what}: {twin} (port {port} of {}) is held by another program (a bound socket, perhaps not listening: `ss -anp | grep :{port}`), which would get the clients that reach this machine that way ({}); stop it, or bind phase4 to \"::\" to take both",
                if twin.is_ipv6() { "IPv6" } else { "IPv4" },
                if twin.is_ipv6() { "`localhost` as ::1, the host name's IPv6 address" } else { "`localhost` as 127.0.0.1, the host name's IPv4 address" },
            ),
        )),
        // No address of that family here (IPv6 disabled): nothing to hold.
        Err(nix::errno::Errno::EADDRNOTAVAIL | nix::errno::Errno::EAFNOSUPPORT) => Ok(()),
        Err(e) => {
            log::warn!("{what}: cannot hold port {port} of the other address family ({twin}): {e}");
            Ok(())
        }
    }
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

/// The other family's side of `bound`: for `localhost`'s address the
/// other one (`::1` for 127.0.0.1, `127.0.0.1` for `::1`: a client asking
/// for `localhost` may get either), none for another loopback address (no
/// name leads clients from it to the other family; two instances on
/// 127.0.0.1 and 127.0.0.2 keep working: review aj AJ3), and for any other
/// address the other family's wildcard, which covers every address a
/// client may have been given for this machine. A v4-mapped IPv6 address
/// (`::ffff:127.0.0.1`) is the IPv4 address it maps (review aj AJ1: its
/// twin was its own socket's).
fn twin_of(bound: SocketAddr) -> Option<SocketAddr> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let port = bound.port();
    let ip: IpAddr = match bound.ip().to_canonical() {
        IpAddr::V4(v4) if v4 == Ipv4Addr::LOCALHOST => Ipv6Addr::LOCALHOST.into(),
        IpAddr::V6(v6) if v6 == Ipv6Addr::LOCALHOST => Ipv4Addr::LOCALHOST.into(),
        ip if ip.is_loopback() => return None,
        IpAddr::V4(_) => Ipv6Addr::UNSPECIFIED.into(),
        IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED.into(),
    };
    Some((ip, port).into())
}

/// Whether every TCP socket on `twin`'s port in its family is a connection
/// in TIME_WAIT (state 06 in `/proc/net/tcp6` / `tcp`): closing, not a
/// program's.
fn only_closing(twin: SocketAddr) -> bool {
    let table = if twin.is_ipv6() {
        "/proc/net/tcp6"
    } else {
        "/proc/net/tcp"
    };
    let Ok(text) = std::fs::read_to_string(table) else {
        return false;
    };
    let want = format!(":{:04X}", twin.port());
    let mut states = text.lines().skip(1).filter_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(1)?.ends_with(&want)).then(|| f.get(3).copied())?
    });
    let mut any = false;
    let all = states.all(|st| {
        any = true;
        st == "06"
    });
    any && all
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
