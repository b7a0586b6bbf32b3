//! A client's TCP stream with a read budget.
//!
//! tungstenite reads until it has a whole message: given a socket that keeps
//! delivering (a flood of empty continuation frames, a ping storm), one
//! `read()` call would keep the broadcaster busy for as long as the client
//! keeps sending. The budget bounds the bytes taken from one client in one
//! turn of the broadcaster (and in a handshake): once spent, the stream
//! answers `WouldBlock`, tungstenite keeps its partial state, and the client
//! is read again in the next turn, after everyone else got their share.

use std::io::{self, Read, Write};
use std::net::TcpStream;

/// A TCP stream whose reads stop at a budget, and which counts the bytes
/// the kernel took from it.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    budget: usize,
    written: u64,
}

impl Conn {
    /// Wrap `stream` with nothing to read until [`Conn::refill`].
    pub fn new(stream: TcpStream) -> Self {
        Conn {
            stream,
            budget: 0,
            written: 0,
        }
    }

    /// Allow `bytes` more bytes to be read (the budget does not accumulate
    /// across turns).
    pub fn refill(&mut self, bytes: usize) {
        self.budget = bytes;
    }

    /// Whether the budget ran out (there may be more to read).
    pub fn spent(&self) -> bool {
        self.budget == 0
    }

    /// What is left of the budget.
    pub fn left(&self) -> usize {
        self.budget
    }

    /// Bytes the kernel has taken so far (what tungstenite still holds is
    /// not counted).
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The socket.
    pub fn tcp(&self) -> &TcpStream {
        &self.stream
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.budget == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.budget);
        let got = self.stream.read(&mut buf[..n])?;
        self.budget -= got;
        Ok(got)
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.stream.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn reads_stop_at_the_budget_and_resume_after_a_refill() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut tx = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (rx, _) = l.accept().unwrap();
        tx.write_all(&[7u8; 1000]).unwrap();
        let mut c = Conn::new(rx);
        let mut buf = [0u8; 4096];
        assert_eq!(
            c.read(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        c.refill(300);
        let mut got = 0;
        while let Ok(n) = c.read(&mut buf) {
            got += n;
        }
        assert_eq!(got, 300);
        assert!(c.spent());
        c.refill(10_000);
        let mut rest = 0;
        while rest < 700 {
            rest += c.read(&mut buf).unwrap();
        }
        assert_eq!(rest, 700);
    }
}
