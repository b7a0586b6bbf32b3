use super::*;
use std::sync::mpsc;

/// A receiver bound at `addr` that reads only when asked (its queue is
/// the kernel's: a test that needs it full sends until it refuses).
fn receiver(addr: &SocketAddr) -> UnixDatagram {
    let rx = UnixDatagram::bind_addr(addr).expect("bind");
    rx.set_nonblocking(true).expect("nonblocking");
    rx
}

fn read_all(rx: &UnixDatagram) -> Vec<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = rx.recv(&mut buf) {
        out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    out
}

fn abstract_addr(tag: &str) -> SocketAddr {
    let name = format!("phase4-notify-test-{}-{tag}", std::process::id());
    SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract name")
}

/// Run `f` on a thread and fail (instead of hanging) if it does not return.
fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| panic!("{what} did not return: a send waited for the receiver"))
}

#[test]
fn notify_socket_names_are_paths_or_abstract_names() {
    let a = notify_addr(OsStr::new("@sd-notify-x")).expect("abstract");
    assert_eq!(a.as_abstract_name(), Some(&b"sd-notify-x"[..]));
    let p = notify_addr(OsStr::new("/run/systemd/notify")).expect("path");
    assert_eq!(
        p.as_pathname(),
        Some(std::path::Path::new("/run/systemd/notify"))
    );
    for bad in ["", "run/systemd/notify", "vsock:2:1234"] {
        assert!(notify_addr(OsStr::new(bad)).is_err(), "{bad:?} accepted");
    }
    let long = format!("/{}", "x".repeat(200));
    assert!(
        notify_addr(OsStr::new(&long)).is_err(),
        "a path longer than sun_path accepted"
    );
}

#[test]
fn messages_reach_an_abstract_socket() {
    let addr = abstract_addr("reach");
    let rx = receiver(&addr);
    let mut n = Notifier::new(Some(addr), Some(Duration::from_secs(1)));
    n.ready("running");
    n.status("running");
    n.status("degraded");
    n.tick(true);
    n.stopping();
    assert_eq!(
        read_all(&rx),
        [
            "READY=1\nSTATUS=running\n",
            "STATUS=degraded\n",
            "WATCHDOG=1\n",
            "STOPPING=1\n"
        ]
    );
}

#[test]
fn a_receiver_that_stops_reading_stalls_nothing_and_ready_follows_when_it_reads() {
    let addr = abstract_addr("stuck");
    let rx = receiver(&addr);
    let (n, filled) = within("filling the queue", move || {
        let mut n = Notifier::new(Some(addr), Some(Duration::from_millis(2)));
        // Pings until the queue refuses one (a blocking send would hang
        // here); the kernel's queue holds a few hundred at most.
        let mut sent = 0;
        for _ in 0..100_000 {
            std::thread::sleep(Duration::from_millis(1));
            n.tick(true);
            if n.refused > 0 {
                break;
            }
            sent += 1;
        }
        assert!(n.refused > 0, "the queue never filled after {sent} pings");
        // Full: READY and a status are held, not waited for.
        n.ready("starting");
        n.status("running");
        n.tick(true);
        (n, sent)
    });
    assert!(n.ready_due, "READY=1 counted as sent into a full queue");
    assert!(n.refused >= 3, "{}", n.refused);
    let queued = read_all(&rx);
    assert_eq!(
        queued.len(),
        filled,
        "only the pings the queue took are there"
    );
    assert!(queued.iter().all(|m| m == "WATCHDOG=1\n"));
    let mut n = n;
    std::thread::sleep(Duration::from_millis(5));
    n.tick(true);
    assert!(!n.ready_due);
    assert_eq!(n.refused, 0, "the recovery resets the count");
    assert_eq!(read_all(&rx), ["READY=1\nSTATUS=running\n", "WATCHDOG=1\n"]);
    // The status it went with is not sent again.
    n.status("running");
    assert!(read_all(&rx).is_empty());
}

#[test]
fn no_socket_is_a_no_op() {
    let mut n = Notifier::new(None, Some(Duration::from_millis(1)));
    n.ready("x");
    n.tick(true);
    n.stopping();
    assert!(!n.ready_due);
    assert_eq!(n.refused, 0);
}

#[test]
fn a_socket_nobody_bound_is_refused_and_retried() {
    let mut n = Notifier::new(Some(abstract_addr("unbound")), None);
    n.ready("x");
    assert!(n.ready_due);
    assert_eq!(n.refused, 1);
    n.tick(false);
    assert_eq!(n.refused, 2, "READY=1 is tried again on the next tick");
}

#[test]
fn the_watchdog_is_this_process_s_only_and_bad_values_are_named() {
    let os = |s: &str| std::ffi::OsString::from(s);
    let w = |usec: Option<&str>, pid: Option<&str>| {
        let (u, p) = (usec.map(os), pid.map(os));
        watchdog_from(u.as_deref(), p.as_deref(), 4242)
    };
    assert_eq!(w(None, None), Ok(None));
    assert_eq!(w(Some("1000000"), None), Ok(Some(Duration::from_secs(1))));
    assert_eq!(
        w(Some("1000000"), Some("4242")),
        Ok(Some(Duration::from_secs(1)))
    );
    // Another process's watchdog (sd_watchdog_enabled(3)): not ours to feed.
    assert_eq!(w(Some("1000000"), Some("1")), Ok(None));
    assert_eq!(w(Some("0"), None), Ok(None));
    assert_eq!(
        w(Some("99999999999999999"), None),
        Ok(Some(Duration::from_secs(86_400)))
    );
    for bad in ["abc", "-5", "1e6", "", "999999999999999999999999"] {
        let e = w(Some(bad), None).unwrap_err();
        assert!(e.contains("WATCHDOG_USEC"), "{bad:?}: {e}");
    }
    assert!(w(Some("1000000"), Some("me"))
        .unwrap_err()
        .contains("WATCHDOG_PID"));
}
