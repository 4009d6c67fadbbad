//! A faulty link between the agent and the broker, on loopback: a TCP relay on
//! 127.0.0.1 that the agent connects to instead of the broker, which can hold
//! every byte (a partition: TCP on both sides sees silence, as when a cable is
//! cut, and the keep-alive decides) or delay every chunk (latency with jitter).
//!
//! It stands in for `tc netem` in a network namespace, which needs the kernel's
//! `sch_netem` (absent on the CI machine) and traffic off loopback. Bytes are
//! never dropped or reordered: TCP would retransmit lost segments anyway, so what
//! the agent can see of a lossy link is delay and stalls, and both are here.
//! [`LinkMode::Lossy`] gives those stalls as packet loss does: the stream is cut
//! into segments of one Ethernet MSS, each is "lost" with the given probability
//! and then arrives one retransmission timeout later (200 ms, Linux's minimum,
//! doubling while the resend is lost too), and nothing behind it overtakes it.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How the link behaves now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkMode {
    /// Bytes pass at once.
    Up,
    /// Every chunk waits `base ± jitter` (order kept).
    Delay {
        /// Mean delay.
        base: Duration,
        /// Largest deviation either way.
        jitter: Duration,
    },
    /// Each segment of [`MSS`] bytes is lost with probability `percent` / 100 and
    /// arrives after one retransmission timeout per loss (200 ms, doubling).
    Lossy {
        /// Loss probability in percent (0 to 100).
        percent: u32,
    },
    /// Nothing passes; held bytes go on when the link is up again.
    Partitioned,
}

/// The segment size of [`LinkMode::Lossy`]: TCP's MSS on Ethernet.
pub const MSS: usize = 1448;
/// The first retransmission timeout of [`LinkMode::Lossy`] (Linux's `TCP_RTO_MIN`).
pub const RTO: Duration = Duration::from_millis(200);

struct Shared {
    mode: Mutex<LinkMode>,
    changed: Condvar,
    connections: AtomicU64,
}

/// The relay. Dropping it stops accepting; open connections end with their peers.
pub struct FaultyLink {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl FaultyLink {
    /// Relays connections on a free 127.0.0.1 port to `upstream`.
    pub fn start(upstream: SocketAddr) -> FaultyLink {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free loopback port for the link");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            mode: Mutex::new(LinkMode::Up),
            changed: Condvar::new(),
            connections: AtomicU64::new(0),
        });
        let s = shared.clone();
        std::thread::Builder::new()
            .name("faulty-link".into())
            .spawn(move || {
                for client in listener.incoming().flatten() {
                    let Ok(server) = TcpStream::connect(upstream) else {
                        continue;
                    };
                    let n = s.connections.fetch_add(1, Ordering::Relaxed);
                    for (direction, from, to) in [
                        (0, client.try_clone(), server.try_clone()),
                        (1, server.try_clone(), client.try_clone()),
                    ] {
                        if let (Ok(from), Ok(to)) = (from, to) {
                            let s = s.clone();
                            let seed = (n * 2 + direction + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                            std::thread::spawn(move || pump(from, to, &s, seed));
                        }
                    }
                }
            })
            .expect("the link's thread starts");
        FaultyLink { addr, shared }
    }

    /// Where the agent connects.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Changes the behaviour for every connection, open or new.
    pub fn set(&self, mode: LinkMode) {
        *self.shared.mode.lock().unwrap() = mode;
        self.shared.changed.notify_all();
    }

    /// Connections relayed so far (each reconnect of the agent is one).
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::Relaxed)
    }
}

/// Copies `from` to `to` chunk by chunk under the link's mode; ends both when
/// either side ends.
fn pump(mut from: TcpStream, mut to: TcpStream, s: &Shared, seed: u64) {
    let mut rng = crate::Rng(seed | 1);
    let mut buf = vec![0u8; 16 * 1024];
    let mut not_before = Instant::now();
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let arrived = Instant::now();
        // Hold while partitioned; then, under a delay, wait out this chunk's time.
        let mode = {
            let mut mode = s.mode.lock().unwrap();
            while *mode == LinkMode::Partitioned {
                mode = s.changed.wait(mode).unwrap();
            }
            *mode
        };
        // Each piece goes on at `not_before`: order is kept, nothing overtakes the
        // piece before it.
        let mut pieces: Vec<(&[u8], Duration)> = Vec::new();
        match mode {
            LinkMode::Delay { base, jitter } => {
                let span = jitter.as_millis() as u64 * 2 + 1;
                let ms = (base.as_millis() as u64 + rng.next_u64() % span)
                    .saturating_sub(jitter.as_millis() as u64);
                pieces.push((&buf[..n], Duration::from_millis(ms)));
            }
            LinkMode::Lossy { percent } => {
                for segment in buf[..n].chunks(MSS) {
                    let mut delay = Duration::ZERO;
                    let mut rto = RTO;
                    while rng.below(100) < percent as usize && rto < Duration::from_secs(60) {
                        delay += rto;
                        rto *= 2;
                    }
                    pieces.push((segment, delay));
                }
            }
            LinkMode::Up | LinkMode::Partitioned => pieces.push((&buf[..n], Duration::ZERO)),
        }
        let mut failed = false;
        for (piece, delay) in pieces {
            not_before = not_before.max(arrived + delay);
            if let Some(wait) = not_before.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            if to.write_all(piece).is_err() {
                failed = true;
                break;
            }
        }
        if failed {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Under loss, every byte still arrives once and in order, and some arrive late.
    #[test]
    fn a_lossy_link_delivers_every_byte_in_order_with_stalls() {
        let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
        let link = FaultyLink::start(upstream.local_addr().unwrap());
        link.set(LinkMode::Lossy { percent: 30 });
        let sent: Vec<u8> = (0..40 * MSS).map(|i| (i % 251) as u8).collect();
        let mut client = TcpStream::connect(link.addr()).unwrap();
        let (mut server, _) = upstream.accept().unwrap();
        let start = Instant::now();
        let writer = {
            let sent = sent.clone();
            std::thread::spawn(move || client.write_all(&sent).map(|()| client))
        };
        let mut got = vec![0u8; sent.len()];
        server.read_exact(&mut got).unwrap();
        let elapsed = start.elapsed();
        assert!(got == sent, "bytes changed or reordered");
        // 40 segments at 30 % loss: the chance that none was lost is 0.7^40 ≈ 6e-7.
        assert!(elapsed >= RTO, "no segment was held back ({elapsed:?})");
        drop(writer.join().unwrap());
        assert_eq!(link.connections(), 1);
    }
}
