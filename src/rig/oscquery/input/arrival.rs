//! Where a datagram of the OSC input came from: its sender and whether it
//! came in on the loopback interface, which decides whether it was sent on
//! this machine.

use std::net::{IpAddr, SocketAddr, UdpSocket};

/// Whether a datagram from `ip` that came in on the loopback interface or
/// not (`via_lo`) was sent on this machine: a loopback source that came in
/// on the loopback interface. The address alone is not enough: Linux
/// delivers `::ffff:127.0.0.1` in an IPv6 packet from any host of the link
/// to a socket bound to `::` (review y: a write forged so was applied),
/// and 127/8 from the link to one bound to `0.0.0.0` when `route_localnet`
/// and `accept_local` are set (review z).
pub(super) fn from_this_machine(ip: IpAddr, via_lo: bool) -> bool {
    via_lo && ip.to_canonical().is_loopback()
}

/// The loopback interface's index, the same in every network namespace.
const LOOPBACK_IFINDEX: u32 = 1;

/// Receive one datagram into `buf`: its length, its sender and whether it
/// came in on the loopback interface (the socket must have been asked for
/// each datagram's arrival interface: [`ask_for_arrival`]).
pub(super) fn receive(
    sock: &UdpSocket,
    buf: &mut [u8],
) -> std::io::Result<(usize, SocketAddr, bool)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, SockaddrStorage};
    use std::os::fd::AsRawFd;
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!(libc::in6_pktinfo);
    let msg = recvmsg::<SockaddrStorage>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::empty(),
    )?;
    // (A control message cut short is an error: not from loopback.)
    let via_lo = msg.cmsgs().is_ok_and(|mut c| {
        c.any(|m| match m {
            ControlMessageOwned::Ipv6PacketInfo(i) => i.ipi6_ifindex == LOOPBACK_IFINDEX,
            ControlMessageOwned::Ipv4PacketInfo(i) => i.ipi_ifindex as u32 == LOOPBACK_IFINDEX,
            _ => false,
        })
    });
    let from = msg.address.as_ref().and_then(|a| {
        a.as_sockaddr_in6()
            .map(|a| SocketAddr::V6((*a).into()))
            .or_else(|| a.as_sockaddr_in().map(|a| SocketAddr::V4((*a).into())))
    });
    let from = from.ok_or_else(|| std::io::Error::other("a datagram without a sender"))?;
    Ok((msg.bytes, from, via_lo))
}

/// Ask `sock` to say where each datagram came in, for [`receive`].
pub(super) fn ask_for_arrival(sock: &UdpSocket) -> std::io::Result<()> {
    use nix::sys::socket::{setsockopt, sockopt};
    if sock.local_addr()?.is_ipv6() {
        setsockopt(sock, sockopt::Ipv6RecvPacketInfo, &true)?;
    } else {
        setsockopt(sock, sockopt::Ipv4PacketInfo, &true)?;
    }
    Ok(())
}
