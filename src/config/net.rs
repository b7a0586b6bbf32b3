//! Syntax checks shared by the settings that name a host to send to
//! (`[[osc.destinations]] host`, `wled.host`), by the listening addresses
//! (`ws.bind`, `oscquery.bind`) and by the OSC address prefix
//! (`osc.prefix`, which OSCQuery also serves its namespace under), so that
//! every such setting refuses the same values with the same words.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Longest `osc.prefix`, in bytes. Every message carries it: a bundled
/// frame holds each of the 13 addresses once, so the prefix adds at most
/// 13 × 64 = 832 bytes to the largest datagram (a 1024-bin spectrum is
/// about 5 KiB), and a small message such as `lmh` (about 30 bytes past
/// the prefix) stays within one Ethernet frame. It also leaves room for
/// OSCQuery's `<prefix>/settings/dsp/low/tau-attack-s` paths. Real
/// prefixes are a word or two ("/audio", "/stage/phase4").
pub const MAX_OSC_PREFIX_BYTES: usize = 64;

/// Characters OSC 1.0 gives a meaning in address patterns (`*?[]{}` and
/// `,` for lists, `#` starts a bundle) or forbids in an address (space).
const OSC_RESERVED: &[u8] = b" #*,?[]{}";

/// What is wrong with an OSC address prefix, if anything: it must be a
/// valid OSC address of its own (`/` then parts of printable ASCII without
/// [`OSC_RESERVED`], no empty part, no trailing `/`) of at most
/// [`MAX_OSC_PREFIX_BYTES`].
pub(super) fn osc_prefix_problem(prefix: &str) -> Option<String> {
    const RULE: &str = "an OSC address such as \"/audio\" or \"/stage/phase4\": '/' then parts of \
                        printable ASCII without space or any of #*,?[]{}, no empty part and no \
                        trailing '/'";
    if prefix.len() > MAX_OSC_PREFIX_BYTES {
        return Some(format!("at most {MAX_OSC_PREFIX_BYTES} bytes; {RULE}"));
    }
    let Some(rest) = prefix.strip_prefix('/') else {
        return Some(RULE.into());
    };
    let part_ok = |p: &str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_graphic() && !OSC_RESERVED.contains(&b))
    };
    (!rest.split('/').all(part_ok)).then(|| RULE.into())
}

/// What is wrong with a listening address (`ws.bind`, `oscquery.bind`), if
/// anything: it must be one IP address of this machine, or `0.0.0.0` / `::`
/// for all of them. A multicast or broadcast address is no address of a
/// machine, yet Linux binds a TCP listener to one without complaint, and
/// nobody can then connect: a UI that is silently out of reach. An
/// IPv4-mapped form (`::ffff:224.0.0.1`) is judged as its IPv4 address.
pub(super) fn bind_problem(bind: &str) -> Option<&'static str> {
    const RULE: &str = "an IP address of this machine such as 127.0.0.1 or 192.168.1.20, or \
                        0.0.0.0 / :: for all of them";
    let Ok(ip) = bind.parse::<std::net::IpAddr>() else {
        return Some(RULE);
    };
    match ip.to_canonical() {
        std::net::IpAddr::V4(v4) if v4.is_multicast() || v4.is_broadcast() => Some(
            "a multicast or broadcast address, on which nobody can connect; an IP address of \
             this machine such as 127.0.0.1 or 192.168.1.20, or 0.0.0.0 / :: for all of them",
        ),
        std::net::IpAddr::V6(v6) if v6.is_multicast() => Some(
            "a multicast address, on which nobody can connect; an IP address of this machine \
             such as ::1, or :: for all of them",
        ),
        _ => None,
    }
}

/// Why a host setting was refused (each caller words it for its key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HostProblem {
    /// Not an address and not a host name (spaces, a port, a scheme, a
    /// control character, an empty label, too long).
    Syntax,
    /// Only digits and dots (or another form the C library reads as an
    /// IPv4 address, such as `0x7f.1`) but not four numbers 0-255.
    NotIpv4,
    /// `0.0.0.0` or `::`: no host to send to.
    Unspecified,
    /// An IPv6 address where only IPv4 is possible.
    Ipv6,
}

/// What is wrong with a host to send to, if anything: an IP address
/// (IPv6 only if `ipv6`, also in brackets: `[::1]`) or a DNS name of
/// letters, digits, `-` and `_` in dot-separated labels of 1 to 63 bytes
/// that neither start nor end with `-`, at most 253 bytes (a final `.`
/// allowed). A name the C resolver would read as an IPv4 address
/// (`999.1.1.1`, `1.2.3`, `0x7f.1`) is refused here instead of being
/// looked up for ever, as is anything with spaces, a port or a scheme.
pub(super) fn host_problem(host: &str, ipv6: bool) -> Option<HostProblem> {
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return ip.is_unspecified().then_some(HostProblem::Unspecified);
    }
    let bracketed = host.strip_prefix('[').and_then(|r| r.strip_suffix(']'));
    if let Ok(ip) = bracketed.unwrap_or(host).parse::<Ipv6Addr>() {
        return if !ipv6 {
            Some(HostProblem::Ipv6)
        } else if ip.is_unspecified() {
            Some(HostProblem::Unspecified)
        } else {
            None
        };
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
        return Some(HostProblem::Syntax);
    }
    // inet_aton's forms: 1 to 4 parts, each decimal, octal (0...) or hex
    // (0x...). getaddrinfo takes those as an address, not as a name.
    let number = |l: &str| match l.strip_prefix("0x").or_else(|| l.strip_prefix("0X")) {
        Some(hex) => hex.bytes().all(|b| b.is_ascii_hexdigit()),
        None => l.bytes().all(|b| b.is_ascii_digit()),
    };
    if name.split('.').count() <= 4 && name.split('.').all(number) {
        return Some(HostProblem::NotIpv4);
    }
    // A name whose last label is all digits is no DNS name either (no
    // top-level domain is numeric): `1.2.3.4.5`.
    if name
        .rsplit('.')
        .next()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Some(HostProblem::NotIpv4);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bind_address_is_one_this_machine_can_have() {
        for good in [
            "127.0.0.1",
            "0.0.0.0",
            "::",
            "::1",
            "192.168.1.20",
            "fe80::1",
            "::ffff:10.9.9.9",
        ] {
            assert_eq!(bind_problem(good), None, "{good:?}");
        }
        for bad in [
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "ff02::1",
            "ff05::fb",
            "::ffff:224.0.0.251",
            "::ffff:255.255.255.255",
        ] {
            assert!(bind_problem(bad).unwrap().contains("multicast"), "{bad:?}");
        }
        for bad in ["lan", "", "999.1.1.1", "0.0.0.0%x", "127.0.0.1:80"] {
            assert!(
                bind_problem(bad).unwrap().starts_with("an IP address"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn osc_prefixes() {
        for good in [
            "/audio",
            "/a",
            "/stage/phase4",
            "/a-b_c.d/e~f!g",
            &format!("/{}", "a".repeat(MAX_OSC_PREFIX_BYTES - 1)),
        ] {
            assert_eq!(osc_prefix_problem(good), None, "{good:?}");
        }
        for bad in [
            "",
            "/",
            "audio",
            "/audio/",
            "//audio",
            "/a//b",
            "/au\0dio",
            "/a\nb",
            "/a\tb",
            "/a b",
            "/a#b",
            "/a*",
            "/a,b",
            "/a?",
            "/a[b]",
            "/a{b}",
            "/\u{7f}",
            "/é",
            &format!("/{}", "a".repeat(MAX_OSC_PREFIX_BYTES)),
        ] {
            assert!(osc_prefix_problem(bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn hosts() {
        for good in [
            "127.0.0.1",
            "239.0.0.1",
            "255.255.255.255",
            "localhost",
            "stage-pi.local",
            "wled_1.lan.",
            "a1.b2",
            "0x7f.lan",
        ] {
            assert_eq!(host_problem(good, false), None, "{good}");
            assert_eq!(host_problem(good, true), None, "{good}");
        }
        for v6 in ["::1", "[::1]", "ff02::1"] {
            assert_eq!(host_problem(v6, true), None, "{v6}");
            assert_eq!(host_problem(v6, false), Some(HostProblem::Ipv6), "{v6}");
        }
        for (bad, why) in [
            ("", HostProblem::Syntax),
            ("a\0b", HostProblem::Syntax),
            ("a b", HostProblem::Syntax),
            (" 127.0.0.1", HostProblem::Syntax),
            ("127.0.0.1:80", HostProblem::Syntax),
            ("http://x", HostProblem::Syntax),
            ("-x", HostProblem::Syntax),
            ("x-", HostProblem::Syntax),
            ("a..b", HostProblem::Syntax),
            ("[127.0.0.1]", HostProblem::Syntax),
            ("fe80::1%eth0", HostProblem::Syntax),
            ("999.1.1.1", HostProblem::NotIpv4),
            ("1.2.3", HostProblem::NotIpv4),
            ("127.1", HostProblem::NotIpv4),
            ("0x7f.1", HostProblem::NotIpv4),
            ("0x7f000001", HostProblem::NotIpv4),
            ("1.2.3.4.5", HostProblem::NotIpv4),
            ("a.1", HostProblem::NotIpv4),
            ("0.0.0.0", HostProblem::Unspecified),
        ] {
            assert_eq!(host_problem(bad, true), Some(why), "{bad:?}");
        }
        assert_eq!(host_problem("::", true), Some(HostProblem::Unspecified));
        assert_eq!(
            host_problem(&"a".repeat(64), true),
            Some(HostProblem::Syntax)
        );
        assert_eq!(host_problem(&"a".repeat(63), true), None);
        let long = ["a"; 128].join(".");
        assert_eq!(host_problem(&long, true), Some(HostProblem::Syntax));
    }
}
