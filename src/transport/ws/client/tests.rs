use super::*;

/// A client on a loopback connection, and the other end of it.
fn client(authorized: bool, rate: f64) -> (Client, std::net::TcpStream) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let tx = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (rx, peer) = l.accept().unwrap();
    let ws = WebSocket::from_raw_socket(Conn::new(rx), tungstenite::protocol::Role::Server, None);
    (Client::new(1, ws, authorized, peer, rate).unwrap(), tx)
}

#[test]
fn a_client_over_its_byte_rate_waits_for_a_whole_turn_budget() {
    let (mut c, _tx) = client(false, 10.0);
    let t0 = Instant::now();
    assert_eq!(c.read_allowance(t0), READ_BYTES_PER_TURN_UNAUTHORIZED);
    c.spend_reading(READ_BYTES_PER_S_UNAUTHORIZED as usize);
    // A few bytes' worth later: nothing yet.
    assert_eq!(c.read_allowance(t0 + Duration::from_millis(1)), 0);
    // A turn's budget later: a turn's budget.
    let turn = Duration::from_secs_f64(
        1.01 * READ_BYTES_PER_TURN_UNAUTHORIZED as f64 / READ_BYTES_PER_S_UNAUTHORIZED,
    );
    assert_eq!(
        c.read_allowance(t0 + Duration::from_millis(1) + turn),
        READ_BYTES_PER_TURN_UNAUTHORIZED
    );
}

#[test]
fn error_replies_stop_after_their_burst_and_come_back_at_their_rate() {
    let (mut c, _tx) = client(true, 200.0);
    let t0 = Instant::now();
    // 100 errors within a millisecond: the burst goes out, the rest is
    // counted and dropped.
    for k in 0..100 {
        let at = t0 + Duration::from_micros(10 * k);
        assert!(c.push_error("{}".into(), None, at));
    }
    assert_eq!(c.replies.len(), ERROR_BURST as usize);
    assert_eq!(c.errors_suppressed, 100 - ERROR_BURST as u64);
    // An error every 10 ms for the next second: ERRORS_PER_S of them go
    // out (the bucket refills while the refused ones keep coming).
    c.replies.clear();
    for k in 1..=100 {
        let at = t0 + Duration::from_millis(10 * k);
        assert!(c.push_error("{}".into(), None, at));
    }
    assert_eq!(c.replies.len(), ERRORS_PER_S as usize);
}

#[test]
fn frames_that_waited_too_long_are_dropped_and_announcements_kept() {
    let (mut c, mut tx) = client(true, 10.0);
    let t0 = Instant::now();
    let old = t0 - FRAME_MAX_AGE - Duration::from_millis(50);
    c.meta_due = false;
    for k in 0..5 {
        c.queue_frame(Message::Text(format!("old {k}").into()), old, false);
    }
    c.queue_frame(Message::Text("announcement".into()), old, true);
    c.queue_frame(Message::Text("fresh".into()), t0, false);
    assert_eq!(c.write_out(&Utf8Bytes::from("{}"), t0), Flow::Drained);
    assert_eq!(c.drops, 5);
    // The other end gets the announcement, then the fresh frame.
    let mut got = Vec::new();
    tx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = [0u8; 256];
    while got.len() < 2 + "announcement".len() + 2 + "fresh".len() {
        let n = std::io::Read::read(&mut tx, &mut buf).unwrap();
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.contains("announcement") && text.ends_with("fresh"),
        "{text:?}"
    );
    assert!(!text.contains("old"));
}

#[test]
fn a_full_queue_drops_frames_before_announcements() {
    let (mut c, _tx) = client(true, 10.0);
    let t0 = Instant::now();
    c.queue_frame(Message::Text("announcement".into()), t0, true);
    for k in 0..(2 * FRAME_CAP) {
        c.queue_frame(Message::Text(format!("frame {k}").into()), t0, false);
    }
    assert_eq!(c.frames.len(), FRAME_CAP);
    assert!(c.frames.front().is_some_and(|q| q.keep));
    assert_eq!(c.drops, FRAME_CAP as u64 + 1);
}

#[test]
fn frames_wait_while_the_backlog_is_full_and_a_stuck_client_stalls() {
    let (mut c, _tx) = client(true, 10.0);
    let t0 = Instant::now();
    c.meta_due = false;
    // The other end never reads: the socket fills and frames queue.
    let big = "x".repeat(8 * 1024);
    let mut now = t0;
    for _ in 0..200 {
        c.queue_frame(Message::Text(big.clone().into()), now, false);
        let _ = c.write_out(&Utf8Bytes::from("{}"), now);
        now += Duration::from_millis(10);
    }
    // Little of it went past the backlog bound (the kernel's buffers
    // on both ends and tungstenite's hold the rest).
    assert!(c.drops > 100, "{}", c.drops);
    assert!(c.stalled_for(now) > Duration::from_millis(500));
}

#[test]
fn the_inbound_budget_drops_then_calls_a_flood() {
    let mut b = Bucket::full(10.0);
    let t0 = Instant::now();
    let rate = 10.0;
    let mut seen = Vec::new();
    for _ in 0..100 {
        let level = b.take(rate, rate, FLOOD_FACTOR * rate + 1.0, t0);
        seen.push(if level >= 0.0 {
            Admission::Admit
        } else if level <= -FLOOD_FACTOR * rate {
            Admission::Flood
        } else {
            Admission::Drop
        });
    }
    assert_eq!(seen.iter().filter(|a| **a == Admission::Admit).count(), 10);
    assert_eq!(seen[10], Admission::Drop);
    assert_eq!(seen.last(), Some(&Admission::Flood));
    // A second later the budget is back.
    assert!(
        b.take(
            rate,
            rate,
            FLOOD_FACTOR * rate + 1.0,
            t0 + Duration::from_secs(20)
        ) >= 0.0
    );
}
