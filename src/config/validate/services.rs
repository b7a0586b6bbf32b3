//! Range checks of the network outputs and services: `[osc]` (prefix,
//! addresses, destinations), `[ws]` (addresses, ports, limits),
//! `[monitor]` and `[record]`.

use super::Checker;
use crate::config::ranges as R;
use crate::config::Config;

/// `[osc]`: prefix, addresses and destinations.
pub(super) fn osc(k: &mut Checker, c: &Config) {
    let o = &c.osc;
    if let Some(why) = crate::config::net::osc_prefix_problem(&o.prefix) {
        // Quoted (no raw control bytes), and a runaway one only measured.
        let value = if o.prefix.len() > crate::config::net::MAX_OSC_PREFIX_BYTES {
            format!("{} bytes", o.prefix.len())
        } else {
            format!("{:?}", o.prefix)
        };
        k.fail("osc.prefix", value, why);
    }
    if o.enabled && o.destinations.is_empty() {
        k.fail(
            "osc.destinations",
            "[]",
            "at least one destination when osc.enabled",
        );
    }
    if o.destinations.len() > crate::config::MAX_OSC_DESTINATIONS {
        k.fail(
            "osc.destinations",
            format!("{} entries", o.destinations.len()),
            format!("at most {}", crate::config::MAX_OSC_DESTINATIONS),
        );
    }
    for (i, d) in o.destinations.iter().enumerate() {
        if let Some(why) = osc_host_problem(&d.host) {
            let value = if d.host.len() > 253 {
                format!("{} bytes", d.host.len())
            } else {
                format!("{:?}", d.host)
            };
            k.fail(&format!("osc.destinations[{i}].host"), value, why);
        }
        if d.port == 0 {
            k.fail(
                &format!("osc.destinations[{i}].port"),
                d.port,
                "must be 1..65535",
            );
        }
        k.range_u(&format!("osc.destinations[{i}].ttl"), d.ttl as u64, 1, 255);
    }
    for a in &o.addresses {
        if !crate::transport::osc::ADDRESSES.contains(&a.as_str()) {
            k.fail(
                "osc.addresses",
                format!("\"{a}\""),
                format!("one of {:?}", crate::transport::osc::ADDRESSES),
            );
        }
    }
    k.range_f("osc.meta-interval-s", o.meta_interval_s, 0.1, 60.0);
    k.range_f("osc.resolve-interval-s", o.resolve_interval_s, 1.0, 3600.0);
}

/// What is wrong with an OSC destination's host, if anything: the check
/// `wled.host` has ([`crate::config::net::host_problem`]), with IPv6 allowed.
fn osc_host_problem(host: &str) -> Option<&'static str> {
    use crate::config::net::HostProblem as H;
    crate::config::net::host_problem(host, true).map(|p| match p {
        H::Syntax | H::Ipv6 => {
            "an IP address or a host name without port or scheme, e.g. \"192.168.1.20\" or \"vj-laptop.local\""
        }
        H::NotIpv4 => "not an IPv4 address (four numbers 0-255) and not a host name",
        H::Unspecified => "0.0.0.0 and :: are no destination; an IP address or a host name",
    })
}

/// `[ws]`: addresses, ports, limits.
pub(super) fn ws(k: &mut Checker, c: &Config) {
    let ws = &c.ws;
    if let Some(why) = crate::config::net::bind_problem(&ws.bind) {
        k.fail("ws.bind", &ws.bind, why);
    }
    if ws.enabled && ws.port == ws.http_port {
        k.fail("ws.http-port", ws.http_port, "must differ from ws.port");
    }
    k.range_f(
        "ws.snapshot-hz",
        ws.snapshot_hz,
        R::SNAPSHOT_HZ.0,
        R::SNAPSHOT_HZ.1,
    );
    k.range_u("ws.max-clients", ws.max_clients as u64, 1, 1024);
    k.range_u(
        "ws.max-clients-per-ip",
        ws.max_clients_per_ip as u64,
        1,
        1024,
    );
    if !ws.token.is_empty()
        && (ws.token.len() < 8
            || ws.token.len() > 128
            || !ws.token.bytes().all(|b| b.is_ascii_graphic()))
    {
        k.fail(
            "ws.token",
            "(not shown)",
            "8-128 printable characters without spaces, or empty for a generated one (phase4 token)",
        );
    }
    for (i, h) in ws.allowed_hosts.iter().enumerate() {
        if !matches!(crate::transport::hosts::split_host_port(h), Some((_, None))) {
            k.fail(
                &format!("ws.allowed-hosts[{i}]"),
                format!("{h:?}"),
                "a host name or address without a port, e.g. \"stage-pi.venue.lan\"",
            );
        }
    }
    for (i, o) in ws.allowed_origins.iter().enumerate() {
        let ok = o
            .strip_prefix("http://")
            .or_else(|| o.strip_prefix("https://"))
            .and_then(|rest| crate::transport::hosts::split_host_port(rest.trim_end_matches('/')))
            .is_some();
        if !ok {
            k.fail(
                &format!("ws.allowed-origins[{i}]"),
                format!("{o:?}"),
                "an origin such as \"http://mypi.local:8766\"",
            );
        }
    }
    k.range_u(
        "ws.max-message-bytes",
        ws.max_message_bytes as u64,
        256,
        1 << 20,
    );
    k.range_f(
        "ws.max-messages-per-s",
        ws.max_messages_per_s,
        1.0,
        10_000.0,
    );
    k.range_f("ws.stall-timeout-s", ws.stall_timeout_s, 0.5, 120.0);
}

/// `[monitor]` and `[record]`.
pub(super) fn monitor(k: &mut Checker, c: &Config) {
    let m = &c.monitor;
    if m.frame_ms != 10 && m.frame_ms != 20 {
        k.fail("monitor.frame-ms", m.frame_ms, "10 or 20");
    }
    k.range_u("monitor.complexity", m.complexity as u64, 0, 10);
    k.range_u("monitor.max-listeners", m.max_listeners as u64, 1, 64);
    let r = &c.record;
    k.range_f("record.replay-s", r.replay_s, 0.0, 600.0);
    k.range_u("record.max-total-mb", r.max_total_mb, 1, 1 << 30);
    k.range_u("record.min-free-mb", r.min_free_mb, 0, 1 << 30);
    k.range_f("record.max-file-s", r.max_file_s, 10.0, 86_400.0);
    k.range_f("record.link-s", r.link_s, 10.0, 600.0);
}
