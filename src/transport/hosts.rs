//! Which `Host` names and browser `Origin`s belong to this box: the defence
//! against DNS rebinding, for the WebSocket and the HTTP server alike.
//!
//! A page from `http://evil.example` whose name the attacker's DNS later
//! points at the Pi's address talks to phase4 as `Host: evil.example`: the
//! browser thinks it is the same origin. So the Host header must name this
//! box: one of its interface addresses (read with `getifaddrs`, refreshed as
//! addresses come and go), `localhost`, its host name and `<hostname>.local`
//! (mDNS), or a name listed in `ws.allowed-hosts` (for DNS names the box is
//! reached by). A browser Origin must be the UI's own (`http(s)://` one of
//! those names, port `ws.http-port`) or listed in `ws.allowed-origins`.
//! Non-browser clients send no Origin and are only held to the Host check.
//!
//! Used by the WebSocket acceptor and the HTTP thread (each has its own
//! [`HostCheck`]); never on a real-time thread.

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How often the interface addresses are read again anyway.
const REFRESH_EVERY: Duration = Duration::from_secs(30);
/// Soonest a name that is not known triggers another read of the addresses.
const REFRESH_ON_MISS: Duration = Duration::from_secs(1);
/// Longest Host header looked at.
const MAX_HOST: usize = 255;

/// A Host header that names this box. Only [`HostCheck::allowed_host`]
/// makes one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowedHost {
    /// Lower-case name or address (IPv6 without brackets).
    pub host: String,
    /// The port, when the header gave one.
    pub port: Option<u16>,
}

/// Split `host[:port]` (IPv6 in brackets). `None` when malformed.
pub fn split_host_port(s: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, p) = rest.split_once(']')?;
        match p {
            "" => (h, None),
            p => (h, Some(p.strip_prefix(':')?)),
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, Some(p)),
            Some(_) => return None, // IPv6 without brackets
            None => (s, None),
        }
    };
    let port = match port {
        // Canonical digits only: Rust's integer parser would also take
        // "+8766", and no browser writes "08766".
        Some(p)
            if !p.is_empty()
                && p.len() <= 5
                && !(p.len() > 1 && p.starts_with('0'))
                && p.bytes().all(|b| b.is_ascii_digit()) =>
        {
            Some(p.parse::<u16>().ok()?)
        }
        Some(_) => return None,
        None => None,
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    let ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'%'));
    ok.then(|| (host.to_ascii_lowercase(), port))
}

/// The names and addresses this box answers to.
#[derive(Debug)]
pub struct HostCheck {
    configured: Vec<String>,
    names: HashSet<String>,
    read_at: Instant,
}

/// The request's one Host header. Two or more count as none (RFC 9112
/// §3.2 wants such a request refused), so which of them a check reads
/// never matters.
pub fn host_header(headers: &hyper::HeaderMap) -> Option<&str> {
    single_header(headers, hyper::header::HOST).ok().flatten()
}

/// A header given twice, or not in visible ASCII.
#[derive(Debug, PartialEq)]
pub struct BadHeader;

/// A header that a request may carry once: `Ok(None)` when absent,
/// [`BadHeader`] when repeated or not visible ASCII, so that no check
/// reads the first of two values while something else (a cache, a proxy)
/// reads the last.
pub fn single_header(
    headers: &hyper::HeaderMap,
    name: hyper::header::HeaderName,
) -> Result<Option<&str>, BadHeader> {
    let mut all = headers.get_all(name).iter();
    let Some(first) = all.next() else {
        return Ok(None);
    };
    if all.next().is_some() {
        return Err(BadHeader);
    }
    first.to_str().map(Some).map_err(|_| BadHeader)
}

/// The names the host name gives this box now: itself, its first label,
/// and that label under `.local`.
fn host_names() -> Vec<String> {
    let Ok(h) = nix::unistd::gethostname() else {
        return Vec::new();
    };
    let h = h.to_string_lossy().to_ascii_lowercase();
    if h.is_empty() {
        return Vec::new();
    }
    let short = h.split('.').next().unwrap_or(&h).to_string();
    vec![format!("{short}.local"), short, h]
}

impl HostCheck {
    /// `configured`: `ws.allowed-hosts`; `bind`: `ws.bind` (a specific
    /// address is allowed even if it is not on an interface yet).
    pub fn new(configured: &[String], bind: &str) -> Self {
        let mut configured: Vec<String> = configured
            .iter()
            .map(|h| h.trim().trim_end_matches('.').to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        if let Ok(ip) = bind.parse::<IpAddr>() {
            if !ip.is_unspecified() {
                configured.push(ip.to_string());
            }
        }
        // The host name at start stays a name of this box: mDNS goes on
        // announcing it after a rename (tester aa: 35 s after one, a
        // browser following phase4's own announcement got 421, and an open
        // UI's WebSocket 403, until a restart).
        configured.extend(host_names());
        let mut c = HostCheck {
            configured,
            names: HashSet::new(),
            read_at: Instant::now(),
        };
        c.refresh();
        c
    }

    fn refresh(&mut self) {
        let mut names: HashSet<String> = self.configured.iter().cloned().collect();
        names.insert("localhost".into());
        names.extend(host_names());
        for ip in interface_addresses() {
            names.insert(ip.to_string());
        }
        self.names = names;
        self.read_at = Instant::now();
    }

    /// Whether `host` (lower case, no port) is one of this box's names.
    pub fn knows(&mut self, host: &str) -> bool {
        if self.read_at.elapsed() > REFRESH_EVERY {
            self.refresh();
        }
        if self.names.contains(host) {
            return true;
        }
        // A loopback address is always this box (127.0.0.2 is not listed).
        if host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()) {
            return true;
        }
        if self.read_at.elapsed() > REFRESH_ON_MISS {
            // An address may have just been added (DHCP, Wi-Fi joined).
            self.refresh();
            return self.names.contains(host);
        }
        false
    }

    /// The Host header as an [`AllowedHost`], or why it is refused.
    pub fn allowed_host(&mut self, header: Option<&str>) -> Result<AllowedHost, String> {
        let Some(header) = header else {
            return Err("no Host header, or more than one".into());
        };
        if header.len() > MAX_HOST {
            return Err("Host header too long".into());
        }
        let Some((host, port)) = split_host_port(header.trim()) else {
            return Err("malformed Host header".into());
        };
        if self.knows(&host) {
            Ok(AllowedHost { host, port })
        } else {
            Err(format!(
                "Host {:?} is not a name of this machine (add it to ws.allowed-hosts)",
                crate::control::device::shorten(&host)
            ))
        }
    }

    /// Whether a browser page from `origin` may talk to us. No Origin means
    /// no browser: allowed. Otherwise the Origin is one of `listed`, or
    /// `http(s)://<a name of this box>:<ui_port>` (the port left out when it
    /// is the scheme's default, 80 or 443, as browsers send it).
    pub fn origin_allowed(
        &mut self,
        origin: Option<&str>,
        ui_port: u16,
        listed: &[String],
    ) -> bool {
        let Some(origin) = origin else { return true };
        if listed
            .iter()
            .any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(origin))
        {
            return true;
        }
        let (rest, default_port) = if let Some(r) = origin.strip_prefix("http://") {
            (r, 80)
        } else if let Some(r) = origin.strip_prefix("https://") {
            (r, 443)
        } else {
            return false;
        };
        // Browsers leave the scheme's default port out of the Origin
        // (`http://box`, never `http://box:80`): a UI on port 80 is that.
        match split_host_port(rest) {
            Some((host, port)) => port.unwrap_or(default_port) == ui_port && self.knows(&host),
            _ => false,
        }
    }
}

/// Every address of every interface that is up.
pub fn interface_addresses() -> Vec<IpAddr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    addrs
        .filter(|a| a.flags.contains(nix::net::if_::InterfaceFlags::IFF_UP))
        .filter_map(|a| {
            let sa = a.address?;
            if let Some(v4) = sa.as_sockaddr_in() {
                Some(IpAddr::V4(v4.ip()))
            } else {
                sa.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
            }
        })
        .collect()
}

/// The interface whose IPv4 broadcast address `ip` is, if any: a listener
/// bound there accepts nobody (review ae AE5: `192.0.2.255` passed the
/// configuration check, which cannot know the subnets, and the UI was out
/// of reach with no word said). `127.255.255.255` is loopback's.
pub fn broadcast_of(ip: IpAddr) -> Option<String> {
    let IpAddr::V4(ip) = ip.to_canonical() else {
        return None;
    };
    nix::ifaddrs::getifaddrs().ok()?.find_map(|a| {
        let b = a.broadcast.and_then(|s| s.as_sockaddr_in().map(|v| v.ip()));
        let on_lo = a
            .flags
            .contains(nix::net::if_::InterfaceFlags::IFF_LOOPBACK);
        let lo_broadcast = on_lo
            && a.address
                .and_then(|s| s.as_sockaddr_in().map(|v| v.ip()))
                .zip(a.netmask.and_then(|s| s.as_sockaddr_in().map(|v| v.ip())))
                // (A /31 or /32 has no broadcast address.)
                .is_some_and(|(addr, mask)| {
                    !u32::from(mask) > 1 && u32::from(addr) | !u32::from(mask) == u32::from(ip)
                });
        (b == Some(ip) || lo_broadcast).then(|| a.interface_name.clone())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loopback_broadcast_address_is_named() {
        assert_eq!(
            broadcast_of("127.255.255.255".parse().unwrap()).as_deref(),
            Some("lo")
        );
        assert_eq!(broadcast_of("127.0.0.1".parse().unwrap()), None);
        assert_eq!(broadcast_of("::1".parse().unwrap()), None);
    }

    #[test]
    fn host_headers_split_into_name_and_port() {
        assert_eq!(
            split_host_port("MyPi.local:8765"),
            Some(("mypi.local".into(), Some(8765)))
        );
        assert_eq!(split_host_port("[::1]:80"), Some(("::1".into(), Some(80))));
        assert_eq!(split_host_port("[::1]"), Some(("::1".into(), None)));
        assert_eq!(
            split_host_port("example.org."),
            Some(("example.org".into(), None))
        );
        for bad in [
            "", "::1", "a:b:c", "x:99999", "x:", "a b", "a/b", "[::1]x", "é",
        ] {
            assert_eq!(split_host_port(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn only_this_boxs_names_pass_the_host_check() {
        let mut c = HostCheck::new(&["stage-pi.venue.lan".into()], "0.0.0.0");
        for ok in [
            "127.0.0.1:8765",
            "localhost:8766",
            "[::1]:8765",
            "127.0.0.2",
            "Stage-Pi.Venue.Lan:8766",
        ] {
            assert!(c.allowed_host(Some(ok)).is_ok(), "{ok}");
        }
        let h = nix::unistd::gethostname().unwrap();
        let h = h.to_string_lossy().to_ascii_lowercase();
        let short = h.split('.').next().unwrap().to_string();
        assert!(c.allowed_host(Some(&format!("{short}.local:8766"))).is_ok());
        for ip in interface_addresses() {
            let host = match ip {
                IpAddr::V4(v4) => format!("{v4}:8766"),
                IpAddr::V6(v6) => format!("[{v6}]:8766"),
            };
            assert!(c.allowed_host(Some(&host)).is_ok(), "{host}");
        }
        for bad in [
            None,
            Some("evil.example:8765"),
            Some("evil.example"),
            Some("localhost.evil.example"),
            Some("192.0.2.1:8765"),
            Some(""),
        ] {
            assert!(c.allowed_host(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn only_the_uis_own_origin_or_listed_ones_are_allowed() {
        let mut c = HostCheck::new(&[], "127.0.0.1");
        let listed = vec!["https://studio.example".to_string()];
        assert!(c.origin_allowed(None, 8766, &[]));
        assert!(c.origin_allowed(Some("http://127.0.0.1:8766"), 8766, &[]));
        assert!(c.origin_allowed(Some("http://localhost:8766"), 8766, &[]));
        assert!(c.origin_allowed(Some("http://[::1]:8766"), 8766, &[]));
        assert!(c.origin_allowed(Some("https://studio.example"), 8766, &listed));
        for bad in [
            "http://evil.example:8766",
            "http://evil.example",
            "http://127.0.0.1:9999",
            "http://127.0.0.1",
            "null",
            "file://",
            "http://127.0.0.1:8766.evil.example",
        ] {
            assert!(!c.origin_allowed(Some(bad), 8766, &listed), "{bad}");
        }
    }

    #[test]
    fn a_ui_on_the_schemes_default_port_is_its_origin_without_a_port() {
        let mut c = HostCheck::new(&[], "127.0.0.1");
        assert!(c.origin_allowed(Some("http://127.0.0.1"), 80, &[]));
        assert!(c.origin_allowed(Some("http://localhost:80"), 80, &[]));
        assert!(c.origin_allowed(Some("https://127.0.0.1"), 443, &[]));
        for (bad, port) in [
            ("https://127.0.0.1", 80),
            ("http://127.0.0.1", 443),
            ("http://evil.example", 80),
            ("http://127.0.0.1:8766", 80),
        ] {
            assert!(!c.origin_allowed(Some(bad), port, &[]), "{bad} {port}");
        }
    }

    #[test]
    fn a_single_header_is_one_value_or_none() {
        let mut h = hyper::HeaderMap::new();
        let origin = hyper::header::ORIGIN;
        assert_eq!(single_header(&h, origin.clone()), Ok(None));
        h.append(&origin, "http://box.local:8766".parse().unwrap());
        assert_eq!(
            single_header(&h, origin.clone()),
            Ok(Some("http://box.local:8766"))
        );
        h.append(&origin, "http://evil.example".parse().unwrap());
        assert_eq!(single_header(&h, origin.clone()), Err(BadHeader));
        let mut h = hyper::HeaderMap::new();
        h.insert(
            &origin,
            hyper::header::HeaderValue::from_bytes(b"http://b\xc3\xa9.local").unwrap(),
        );
        assert_eq!(single_header(&h, origin), Err(BadHeader), "not ASCII");
    }

    #[test]
    fn two_host_headers_count_as_none() {
        let mut h = hyper::HeaderMap::new();
        assert_eq!(host_header(&h), None);
        h.append(hyper::header::HOST, "localhost".parse().unwrap());
        assert_eq!(host_header(&h), Some("localhost"));
        h.append(hyper::header::HOST, "evil.example".parse().unwrap());
        assert_eq!(host_header(&h), None, "whichever comes first");
    }
}
