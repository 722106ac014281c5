//! A TCP proxy a test puts between the mount and a real server (anvil, the node) to cut
//! the connection and restore it: cut, it closes every open connection and every new one
//! at once, as a server that went away would.
#![allow(dead_code)]

use std::io::Read;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub struct Proxy {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
    counts: Arc<Counts>,
}

/// What went through, for tests that assert what the server never got.
#[derive(Default)]
struct Counts {
    /// Bytes passed on to the server.
    to_server: AtomicU64,
    /// Bytes passed back from the server.
    from_server: AtomicU64,
    /// Requests held back by the `Delay` (their hold begun).
    delayed: AtomicU64,
    /// The request lines passed on (`POST /api/v0/add?…`), in order.
    requests: Mutex<Vec<String>>,
}

/// Requests whose bytes contain `needle` reach the server only after `delay` (a slow node
/// for one object; requests on other connections pass meanwhile).
#[derive(Clone)]
pub struct Delay {
    pub needle: Vec<u8>,
    pub delay: std::time::Duration,
}

impl Proxy {
    /// Proxies `127.0.0.1:<new port>` to the host and port of `url` (`http://host:port`).
    pub fn start(url: &str) -> Proxy {
        Proxy::start_delaying(url, None)
    }

    /// Like [`Proxy::start`], holding back requests that match `delay`.
    pub fn start_delaying(url: &str, delay: Option<Delay>) -> Proxy {
        let target: SocketAddr = url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .expect("target is http://IP:PORT");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let p = Proxy {
            addr,
            up: Arc::new(AtomicBool::new(true)),
            stop: Arc::new(AtomicBool::new(false)),
            open: Arc::new(Mutex::new(Vec::new())),
            counts: Arc::default(),
        };
        let (up, stop, open) = (p.up.clone(), p.stop.clone(), p.open.clone());
        let counts = p.counts.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                if !up.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(target) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                {
                    let mut o = open.lock().unwrap();
                    o.push(client.try_clone().unwrap());
                    o.push(server.try_clone().unwrap());
                }
                pipe(
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    delay.clone(),
                    Some(counts.clone()),
                    Direction::ToServer,
                );
                pipe(
                    server,
                    client,
                    None,
                    Some(counts.clone()),
                    Direction::FromServer,
                );
            }
        });
        p
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every open connection is closed and new ones are closed on arrival.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// Bytes passed on to the server so far.
    pub fn bytes_to_server(&self) -> u64 {
        self.counts.to_server.load(Ordering::SeqCst)
    }

    /// Bytes passed back from the server so far (what the node sent: its answers).
    pub fn bytes_from_server(&self) -> u64 {
        self.counts.from_server.load(Ordering::SeqCst)
    }

    /// Requests the `Delay` began to hold back so far.
    pub fn delayed(&self) -> u64 {
        self.counts.delayed.load(Ordering::SeqCst)
    }

    /// The request lines passed on so far, in order (`POST /api/v0/add?…`). A request's
    /// head begins a read of its own: HTTP/1.1 sends the next request on a connection only
    /// after the answer to the last.
    pub fn requests(&self) -> Vec<String> {
        self.counts.requests.lock().unwrap().clone()
    }

    /// New connections reach the server again.
    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

#[derive(Clone, Copy)]
enum Direction {
    ToServer,
    FromServer,
}

fn pipe(
    mut from: TcpStream,
    mut to: TcpStream,
    delay: Option<Delay>,
    counts: Option<Arc<Counts>>,
    direction: Direction,
) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 64 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if let Some(d) = &delay
                        && buf[..n].windows(d.needle.len()).any(|w| w == d.needle)
                    {
                        if let Some(c) = &counts {
                            c.delayed.fetch_add(1, Ordering::SeqCst);
                        }
                        std::thread::sleep(d.delay);
                    }
                    if std::io::Write::write_all(&mut to, &buf[..n]).is_err() {
                        break;
                    }
                    if let (Some(c), Direction::ToServer) = (&counts, direction)
                        && let Some(line) = request_line(&buf[..n])
                    {
                        c.requests.lock().unwrap().push(line);
                    }
                    if let Some(c) = &counts {
                        match direction {
                            Direction::ToServer => &c.to_server,
                            Direction::FromServer => &c.from_server,
                        }
                        .fetch_add(n as u64, Ordering::SeqCst);
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}

/// The request line `bytes` begin with, if they begin a request.
fn request_line(bytes: &[u8]) -> Option<String> {
    let methods: [&[u8]; 4] = [b"POST /", b"GET /", b"PUT /", b"HEAD /"];
    if !methods.iter().any(|m| bytes.starts_with(m)) {
        return None;
    }
    let end = bytes.windows(2).position(|w| w == b"\r\n")?;
    Some(String::from_utf8_lossy(&bytes[..end]).into_owned())
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.cut();
        // Wake the accept loop so it sees `stop`.
        let _ = TcpStream::connect(self.addr);
    }
}
