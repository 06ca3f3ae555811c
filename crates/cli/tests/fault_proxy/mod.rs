//! A TCP proxy that makes the network between parties unreliable, for tests that run the
//! parties as separate processes.
//!
//! One listener per destination party; a party reaches a peer through the peer's listener,
//! which forwards to the peer's real exchange endpoint. It works on TCP bytes only, so
//! mutual TLS passes through end to end. The exchange opens one connection per request, so
//! a fault on a connection is a fault on one message. For each connection a seeded plan
//! ([`Plan::fault`]) decides one [`Fault`]:
//!
//! - [`Fault::Drop`]: the connection is hung up before anything reaches the receiver;
//! - [`Fault::CutAnswer`]: the request reaches the receiver, which handles it, but its answer
//!   never reaches the sender, so the sender tries again and the receiver sees a duplicate;
//! - [`Fault::Delay`]: the request, and then the answer, are held back for a bounded random
//!   time, so later deliveries overtake earlier ones (reordering);
//! - [`Fault::Pass`].
//!
//! Where the answer starts is found without decrypting: in TLS 1.3 the client's first
//! record of type application data (23) — its encrypted Certificate, or the request itself —
//! can only be sent after it has read the server's whole first flight, and the server says
//! nothing more until it answers. So whatever the server sends after the proxy has seen
//! that record is the answer (or an alert about the client, which is as good as one).
//!
//! The decision depends only on the seed, the route and the connection's number on that
//! route, so a failing run replays from its seed as far as the processes' timing allows.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// TLS record type of application data (RFC 8446 §5.1).
const TLS_APPLICATION_DATA: u8 = 23;
/// Longest a proxied connection may live; the exchange's own timeout is shorter.
const CONNECTION_MAX: Duration = Duration::from_secs(60);
/// How long a dropped connection waits for the client's first bytes before hanging up.
const DROP_READ_MAX: Duration = Duration::from_secs(2);
/// Bytes read at a time.
const CHUNK_BYTES: usize = 16 * 1024;

/// What happens to one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Forwarded both ways.
    Pass,
    /// The request held back `request_ms` before it is forwarded, the answer `answer_ms`.
    Delay { request_ms: u64, answer_ms: u64 },
    /// Hung up before anything is forwarded.
    Drop,
    /// The request forwarded, the answer thrown away and the connection hung up.
    CutAnswer,
}

/// How often each fault happens, from a seed.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    pub seed: u64,
    /// Connections dropped, in percent.
    pub drop_percent: u8,
    /// Connections whose answer is cut, in percent.
    pub cut_percent: u8,
    /// Connections delayed, in percent (the rest pass).
    pub delay_percent: u8,
    /// Longest delay of a request or an answer, in milliseconds.
    pub delay_max_ms: u64,
    /// Whether the first [`EVERY_FAULT_FIRST`] connections of each route meet every fault
    /// once (in an order drawn from the seed), so that a run that sends little still
    /// exercises all of them.
    pub every_fault_first: bool,
}

/// See [`Plan::every_fault_first`].
pub const EVERY_FAULT_FIRST: u64 = 4;

impl Plan {
    /// The fault of connection `connection` (0, 1, …) on route `route`: a function of the
    /// seed, the route and the connection's number only.
    #[must_use]
    pub fn fault(&self, route: usize, connection: u64) -> Fault {
        let route = u64::try_from(route).unwrap_or(u64::MAX);
        let route_seed = self.seed ^ route.rotate_left(48);
        let mut rng =
            StdRng::seed_from_u64(route_seed ^ connection.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let delay = Fault::Delay {
            request_ms: rng.random_range(0..=self.delay_max_ms),
            answer_ms: rng.random_range(0..=self.delay_max_ms),
        };
        if self.every_fault_first && connection < EVERY_FAULT_FIRST {
            let mut order = [Fault::Drop, Fault::CutAnswer, delay, Fault::Pass];
            order.shuffle(&mut StdRng::seed_from_u64(route_seed));
            return order[usize::try_from(connection).unwrap_or(0)];
        }
        let roll: u8 = rng.random_range(0..100);
        let drop = self.drop_percent;
        let cut = drop.saturating_add(self.cut_percent);
        if roll < drop {
            Fault::Drop
        } else if roll < cut {
            Fault::CutAnswer
        } else if roll < cut.saturating_add(self.delay_percent) {
            delay
        } else {
            Fault::Pass
        }
    }
}

/// What the proxy did so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub connections: u64,
    pub passed: u64,
    pub delayed: u64,
    pub dropped: u64,
    /// Connections planned to lose their answer.
    pub cut_planned: u64,
    /// Of those, the ones whose answer came and was thrown away (the receiver handled the
    /// request, the sender never heard).
    pub answers_lost: u64,
}

#[derive(Debug, Default)]
struct Counters {
    connections: AtomicU64,
    passed: AtomicU64,
    delayed: AtomicU64,
    dropped: AtomicU64,
    cut_planned: AtomicU64,
    answers_lost: AtomicU64,
}

impl Counters {
    fn count(&self, fault: Fault) {
        self.connections.fetch_add(1, Ordering::Relaxed);
        let which = match fault {
            Fault::Pass => &self.passed,
            Fault::Delay { .. } => &self.delayed,
            Fault::Drop => &self.dropped,
            Fault::CutAnswer => &self.cut_planned,
        };
        which.fetch_add(1, Ordering::Relaxed);
    }
}

/// The running proxy: one listener per route; everything stops when it is dropped.
pub struct FaultProxy {
    routes: Vec<(String, SocketAddr)>,
    counters: Arc<Counters>,
    _listeners: JoinSet<()>,
}

impl FaultProxy {
    /// Listens on a free loopback port for each `(name, upstream)` route and forwards what
    /// arrives there to `upstream`, with the faults `plan` decides.
    ///
    /// # Errors
    /// A listener cannot be bound.
    pub async fn start(plan: Plan, upstreams: &[(String, SocketAddr)]) -> io::Result<FaultProxy> {
        let counters = Arc::new(Counters::default());
        let mut listeners = JoinSet::new();
        let mut routes = Vec::with_capacity(upstreams.len());
        for (route, (name, upstream)) in upstreams.iter().enumerate() {
            let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
            routes.push((name.clone(), listener.local_addr()?));
            listeners.spawn(serve_route(
                listener,
                *upstream,
                plan,
                route,
                counters.clone(),
            ));
        }
        Ok(FaultProxy {
            routes,
            counters,
            _listeners: listeners,
        })
    }

    /// Where the route named `name` listens.
    #[must_use]
    pub fn addr(&self, name: &str) -> Option<SocketAddr> {
        self.routes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, addr)| *addr)
    }

    /// What the proxy did so far.
    #[must_use]
    pub fn tally(&self) -> Tally {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Tally {
            connections: get(&c.connections),
            passed: get(&c.passed),
            delayed: get(&c.delayed),
            dropped: get(&c.dropped),
            cut_planned: get(&c.cut_planned),
            answers_lost: get(&c.answers_lost),
        }
    }
}

/// Accepts connections on one route until aborted; their relays end with it.
async fn serve_route(
    listener: TcpListener,
    upstream: SocketAddr,
    plan: Plan,
    route: usize,
    counters: Arc<Counters>,
) {
    let mut relays = JoinSet::new();
    let mut next: u64 = 0;
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let fault = plan.fault(route, next);
        next += 1;
        counters.count(fault);
        let counters = counters.clone();
        relays.spawn(async move {
            let _ = tokio::time::timeout(
                CONNECTION_MAX,
                relay(client, upstream, fault, &counters.answers_lost),
            )
            .await;
        });
        while relays.try_join_next().is_some() {}
    }
}

/// Follows TLS record headers through a byte stream.
#[derive(Debug, Default)]
struct Records {
    header: [u8; 5],
    have: usize,
    skip: usize,
}

impl Records {
    /// Feeds the next bytes of the stream; whether a record header of type application
    /// data was completed in them.
    fn feed(&mut self, mut bytes: &[u8]) -> bool {
        let mut application_data = false;
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (self.header.len() - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have == self.header.len() {
                application_data |= self.header[0] == TLS_APPLICATION_DATA;
                self.skip = usize::from(u16::from_be_bytes([self.header[3], self.header[4]]));
                self.have = 0;
            }
        }
        application_data
    }
}

/// Forwards one connection with its fault.
async fn relay(mut client: TcpStream, upstream: SocketAddr, fault: Fault, lost: &AtomicU64) {
    if fault == Fault::Drop {
        // Take the client's first bytes (its hello), forward nothing, hang up.
        let mut first = [0u8; 512];
        let _ = tokio::time::timeout(DROP_READ_MAX, client.read(&mut first)).await;
        return;
    }
    let (request_ms, answer_ms) = match fault {
        Fault::Delay {
            request_ms,
            answer_ms,
        } => (request_ms, answer_ms),
        _ => (0, 0),
    };
    if request_ms > 0 {
        tokio::time::sleep(Duration::from_millis(request_ms)).await;
    }
    // An upstream that does not answer (not started yet, or stopped) is a hang-up too.
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let requested = Arc::new(AtomicBool::new(false));
    let cut = fault == Fault::CutAnswer;

    let seen = requested.clone();
    let upward = async move {
        let mut records = Records::default();
        let mut buf = vec![0u8; CHUNK_BYTES];
        loop {
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            // Marked before it is forwarded: the answer cannot come earlier.
            if records.feed(&buf[..n]) {
                seen.store(true, Ordering::SeqCst);
            }
            if server_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = server_write.shutdown().await;
    };
    let downward = async move {
        let mut buf = vec![0u8; CHUNK_BYTES];
        let mut answering = false;
        loop {
            let n = match server_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if !answering && requested.load(Ordering::SeqCst) {
                answering = true;
                if cut {
                    // The receiver has answered, so it handled the request; the sender
                    // never hears. Dropping the halves hangs up on both.
                    lost.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                if answer_ms > 0 {
                    tokio::time::sleep(Duration::from_millis(answer_ms)).await;
                }
            }
            if client_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = client_write.shutdown().await;
    };
    tokio::join!(upward, downward);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(seed: u64, drop: u8, cut: u8, delay: u8) -> Plan {
        Plan {
            seed,
            drop_percent: drop,
            cut_percent: cut,
            delay_percent: delay,
            delay_max_ms: 300,
            every_fault_first: false,
        }
    }

    #[test]
    fn a_plan_replays_from_its_seed_at_about_its_rates() {
        let a = plan(7, 10, 20, 30);
        let faults: Vec<Fault> = (0..2_000).map(|i| a.fault(1, i)).collect();
        let again: Vec<Fault> = (0..2_000).map(|i| a.fault(1, i)).collect();
        assert_eq!(faults, again);
        let other: Vec<Fault> = (0..2_000)
            .map(|i| plan(8, 10, 20, 30).fault(1, i))
            .collect();
        assert_ne!(faults, other, "another seed, other faults");
        let route2: Vec<Fault> = (0..2_000).map(|i| a.fault(2, i)).collect();
        assert_ne!(faults, route2, "another route, other faults");
        let share = |f: fn(&Fault) -> bool| faults.iter().filter(|x| f(x)).count();
        let dropped = share(|f| *f == Fault::Drop);
        let cut = share(|f| *f == Fault::CutAnswer);
        let delayed = share(|f| matches!(f, Fault::Delay { .. }));
        assert!((120..=280).contains(&dropped), "{dropped} of 2000 dropped");
        assert!((320..=480).contains(&cut), "{cut} of 2000 cut");
        assert!((500..=700).contains(&delayed), "{delayed} of 2000 delayed");
        assert!(faults.iter().all(|f| match f {
            Fault::Delay {
                request_ms,
                answer_ms,
            } => *request_ms <= 300 && *answer_ms <= 300,
            _ => true,
        }));
    }

    #[test]
    fn with_every_fault_first_a_route_meets_each_fault_at_once() {
        let name = |f: Fault| match f {
            Fault::Pass => "pass",
            Fault::Delay { .. } => "delay",
            Fault::Drop => "drop",
            Fault::CutAnswer => "cut",
        };
        let mut orders = std::collections::BTreeSet::new();
        for seed in 0..40 {
            let p = Plan {
                every_fault_first: true,
                ..plan(seed, 0, 0, 0)
            };
            let first: Vec<&str> = (0..EVERY_FAULT_FIRST)
                .map(|i| name(p.fault(2, i)))
                .collect();
            let mut sorted = first.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, ["cut", "delay", "drop", "pass"], "seed {seed}");
            orders.insert(first);
            // Then the rates decide: none here.
            assert_eq!(p.fault(2, EVERY_FAULT_FIRST), Fault::Pass);
        }
        assert!(orders.len() > 1, "the order comes from the seed");
    }

    #[test]
    fn records_are_followed_across_reads() {
        let mut r = Records::default();
        // A handshake record (22) of 3 bytes, then an application-data header split in two.
        assert!(!r.feed(&[22, 3, 3, 0, 3, 1, 2]));
        assert!(!r.feed(&[3, 23, 3]));
        assert!(r.feed(&[3, 0, 2, 9]));
        // Its payload's second byte, then a change-cipher-spec record.
        assert!(!r.feed(&[9, 20, 3, 3, 0, 1, 1]));
    }

    /// A receiver speaking just enough TLS framing: it sends a handshake record as soon as
    /// a client connects, then answers the first application-data record with one of its
    /// own; what it received comes out of `got`.
    async fn receiver() -> (SocketAddr, tokio::sync::mpsc::Receiver<Vec<u8>>) {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    s.write_all(&[22, 3, 3, 0, 2, 0xAA, 0xBB]).await.unwrap();
                    let mut request = [0u8; 7];
                    s.read_exact(&mut request).await.unwrap();
                    tx.send(request.to_vec()).await.unwrap();
                    let _ = s.write_all(&[23, 3, 3, 0, 2, 0x0C, 0x0D]).await;
                    let mut rest = Vec::new();
                    let _ = s.read_to_end(&mut rest).await;
                });
            }
        });
        (addr, rx)
    }

    /// Connects through the proxy, reads the receiver's hello, sends a request record, says
    /// it is done sending and reads to the end: what came back after the request.
    async fn exchange(proxy: SocketAddr) -> io::Result<Vec<u8>> {
        let mut s = TcpStream::connect(proxy).await?;
        let mut hello = [0u8; 7];
        s.read_exact(&mut hello).await?;
        s.write_all(&[23, 3, 3, 0, 2, 0x01, 0x02]).await?;
        s.shutdown().await?;
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).await?;
        Ok(answer)
    }

    async fn proxy_with(
        plan: Plan,
    ) -> (FaultProxy, SocketAddr, tokio::sync::mpsc::Receiver<Vec<u8>>) {
        let (upstream, got) = receiver().await;
        let proxy = FaultProxy::start(plan, &[("r".to_owned(), upstream)])
            .await
            .unwrap();
        let addr = proxy.addr("r").unwrap();
        (proxy, addr, got)
    }

    #[tokio::test]
    async fn a_passed_connection_carries_the_request_and_the_answer() {
        let (proxy, addr, mut got) = proxy_with(plan(1, 0, 0, 0)).await;
        let answer = exchange(addr).await.unwrap();
        assert_eq!(got.recv().await.unwrap(), [23, 3, 3, 0, 2, 0x01, 0x02]);
        assert_eq!(answer, [23, 3, 3, 0, 2, 0x0C, 0x0D]);
        assert_eq!(proxy.tally().passed, 1);
    }

    #[tokio::test]
    async fn a_delayed_connection_still_carries_both() {
        let (proxy, addr, mut got) = proxy_with(plan(1, 0, 0, 100)).await;
        let answer = exchange(addr).await.unwrap();
        assert_eq!(got.recv().await.unwrap(), [23, 3, 3, 0, 2, 0x01, 0x02]);
        assert_eq!(answer, [23, 3, 3, 0, 2, 0x0C, 0x0D]);
        assert_eq!(proxy.tally().delayed, 1);
    }

    #[tokio::test]
    async fn a_cut_connection_delivers_the_request_but_loses_the_answer() {
        let (proxy, addr, mut got) = proxy_with(plan(1, 0, 100, 0)).await;
        let answer = exchange(addr).await;
        assert_eq!(got.recv().await.unwrap(), [23, 3, 3, 0, 2, 0x01, 0x02]);
        match answer {
            Ok(bytes) => assert!(bytes.is_empty(), "no answer: {bytes:?}"),
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}"),
        }
        let t = proxy.tally();
        assert_eq!((t.cut_planned, t.answers_lost), (1, 1));
    }

    #[tokio::test]
    async fn a_dropped_connection_never_reaches_the_receiver() {
        // A plain listener, never accepting: a connection to it waits in its backlog.
        let upstream_listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        upstream_listener.set_nonblocking(true).unwrap();
        let upstream = upstream_listener.local_addr().unwrap();
        let proxy = FaultProxy::start(plan(1, 100, 0, 0), &[("r".to_owned(), upstream)])
            .await
            .unwrap();
        let mut s = TcpStream::connect(proxy.addr("r").unwrap()).await.unwrap();
        s.write_all(&[22, 3, 3, 0, 1, 0]).await.unwrap();
        let mut rest = Vec::new();
        match s.read_to_end(&mut rest).await {
            Ok(n) => assert_eq!(n, 0, "nothing comes back"),
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}"),
        }
        // The proxy hung up without connecting upstream: nothing waits to be accepted.
        let pending = upstream_listener.accept();
        assert!(
            pending
                .as_ref()
                .is_err_and(|e| e.kind() == io::ErrorKind::WouldBlock),
            "no connection reached the receiver: {pending:?}"
        );
        assert_eq!(proxy.tally().dropped, 1);
    }
}
