//! Binds the listener and accepts connections, one thread each, until shutdown is
//! triggered; then stops accepting and waits for open connections to finish, up to a
//! deadline. What happens on a connection is connection.rs's business.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::app::App;
use crate::connection;
use crate::log::Log;
use crate::shutdown::{self, Readiness, Shutdown};

/// Pause after an accept error such as running out of file descriptors, so the loop does
/// not spin while the condition lasts.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

pub struct Server {
    listener: TcpListener,
    app: Arc<App>,
    shutdown: Arc<Shutdown>,
    log: Log,
}

/// How the drain after shutdown went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainReport {
    /// Connections still open when the drain deadline passed.
    pub unfinished: usize,
    pub waited: Duration,
}

impl Server {
    pub fn bind(address: SocketAddr, app: App, log: Log) -> io::Result<Server> {
        let listener = TcpListener::bind(address)?;
        // The accept loop polls first; non-blocking keeps a connection that vanished between
        // poll and accept from blocking the loop.
        listener.set_nonblocking(true)?;
        Ok(Server {
            listener,
            app: Arc::new(app),
            shutdown: Arc::new(Shutdown::new()?),
            log,
        })
    }

    pub fn local_address(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The handle that stops [`Server::run`], for a signal handler or a test.
    pub fn shutdown(&self) -> Arc<Shutdown> {
        Arc::clone(&self.shutdown)
    }

    /// Accepts connections until shutdown is triggered, then closes the listener and waits
    /// up to `drain_timeout` for open connections to finish their requests.
    pub fn run(self, drain_timeout: Duration) -> DrainReport {
        let Server {
            listener,
            app,
            shutdown,
            log,
        } = self;
        while !shutdown.is_triggered() {
            match shutdown::wait_readable(listener.as_raw_fd(), Some(&shutdown), None) {
                Ok(Readiness::Readable) => {}
                Ok(Readiness::ShuttingDown | Readiness::TimedOut) => continue,
                Err(error) => {
                    log.warn(&format!("Failed to wait for connections: {error}"));
                    thread::sleep(ACCEPT_ERROR_BACKOFF);
                    continue;
                }
            }
            match listener.accept() {
                Ok((stream, _)) => spawn_connection(stream, &app, &shutdown, &log),
                Err(error)
                    if matches!(
                        error.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::Interrupted
                            | io::ErrorKind::ConnectionAborted
                    ) => {}
                Err(error) => {
                    log.warn(&format!("Failed to accept a connection: {error}"));
                    thread::sleep(ACCEPT_ERROR_BACKOFF);
                }
            }
        }
        // New connections are refused from here on.
        drop(listener);

        let started = Instant::now();
        log.info(&format!(
            "stopped accepting; waiting up to {}ms for {} open connection(s)",
            drain_timeout.as_millis(),
            shutdown.open_connections()
        ));
        let unfinished = shutdown.wait_for_connections(drain_timeout);
        DrainReport {
            unfinished,
            waited: started.elapsed(),
        }
    }
}

fn spawn_connection(stream: TcpStream, app: &Arc<App>, shutdown: &Arc<Shutdown>, log: &Log) {
    // Accepted sockets do not inherit O_NONBLOCK on Linux; be explicit anyway. Small
    // writes (stream chunks) must leave at once rather than wait for Nagle.
    if stream.set_nonblocking(false).is_err() || stream.set_nodelay(true).is_err() {
        return;
    }
    let guard = shutdown.track_connection();
    let (app, shutdown, thread_log) = (Arc::clone(app), Arc::clone(shutdown), log.clone());
    let spawned = thread::Builder::new()
        .name("connection".to_string())
        .spawn(move || {
            let _guard = guard;
            connection::serve(stream, &app, &shutdown, &thread_log);
        });
    // On failure the closure, and with it the stream and the guard, is dropped.
    if let Err(error) = spawned {
        log.warn(&format!("Failed to start a connection thread: {error}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::sync::{Mutex, PoisonError};
    use std::thread::JoinHandle;

    struct TestServer {
        address: SocketAddr,
        shutdown: Arc<Shutdown>,
        lines: Arc<Mutex<Vec<String>>>,
        handle: JoinHandle<DrainReport>,
    }

    impl TestServer {
        fn start(broken: bool) -> TestServer {
            let app = App {
                version: "v-test".to_string(),
                hostname: "testhost".to_string(),
                broken,
                healthy_for: None,
                started: std::time::Instant::now(),
            };
            let lines = Arc::default();
            let log = Log::Memory(Arc::clone(&lines));
            let server = Server::bind(([127, 0, 0, 1], 0).into(), app, log).unwrap();
            let address = server.local_address().unwrap();
            let shutdown = server.shutdown();
            let handle = thread::spawn(move || server.run(Duration::from_secs(5)));
            TestServer {
                address,
                shutdown,
                lines,
                handle,
            }
        }

        fn connect(&self) -> Client {
            let stream = TcpStream::connect(self.address).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            Client {
                stream,
                buf: Vec::new(),
            }
        }

        fn lines(&self) -> Vec<String> {
            self.lines
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        }

        fn stop(self) -> DrainReport {
            self.shutdown.trigger();
            self.handle.join().unwrap()
        }
    }

    struct Client {
        stream: TcpStream,
        buf: Vec<u8>,
    }

    #[derive(Debug)]
    struct TestResponse {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
        /// When each chunk of a chunked body arrived.
        chunk_arrivals: Vec<Instant>,
    }

    impl TestResponse {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.as_str())
        }
    }

    impl Client {
        fn get(&mut self, target: &str) -> TestResponse {
            self.send(&format!("GET {target} HTTP/1.1\r\nHost: test\r\n\r\n"));
            self.read_response()
        }

        fn send(&mut self, raw: &str) {
            self.stream.write_all(raw.as_bytes()).unwrap();
        }

        fn read_response(&mut self) -> TestResponse {
            let response = self.read_response_head();
            self.read_body(response)
        }

        fn read_response_head(&mut self) -> TestResponse {
            let head_end = self.fill_until(crate::http::find_head_end);
            let head = String::from_utf8(self.buf.drain(..head_end).collect()).unwrap();
            let mut lines = head.trim_end().split("\r\n");
            let status = lines.next().unwrap()[9..12].parse().unwrap();
            let headers: Vec<(String, String)> = lines
                .map(|line| line.split_once(": ").unwrap())
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect();
            TestResponse {
                status,
                headers,
                body: String::new(),
                chunk_arrivals: Vec::new(),
            }
        }

        fn read_body(&mut self, mut response: TestResponse) -> TestResponse {
            if let Some(length) = response.header("content-length") {
                let length: usize = length.parse().unwrap();
                self.fill_until(|buf| (buf.len() >= length).then_some(length));
                response.body = String::from_utf8(self.buf.drain(..length).collect()).unwrap();
            } else if response.header("transfer-encoding") == Some("chunked") {
                loop {
                    let line_end = self.fill_until(|buf| crate::http::find(buf, b"\r\n"));
                    let line: Vec<u8> = self.buf.drain(..line_end + 2).collect();
                    let size = crate::http::parse_chunk_size(&line[..line_end]).unwrap() as usize;
                    self.fill_until(|buf| (buf.len() >= size + 2).then_some(()));
                    let data: Vec<u8> = self.buf.drain(..size + 2).collect();
                    assert_eq!(&data[size..], b"\r\n");
                    if size == 0 {
                        break;
                    }
                    response.chunk_arrivals.push(Instant::now());
                    response.body += std::str::from_utf8(&data[..size]).unwrap();
                }
            }
            response
        }

        /// True if the server closed the connection (EOF) with nothing more sent.
        fn is_closed(&mut self) -> bool {
            let mut byte = [0];
            matches!(self.stream.read(&mut byte), Ok(0))
        }

        fn fill_until<T>(&mut self, mut done: impl FnMut(&[u8]) -> Option<T>) -> T {
            loop {
                if let Some(value) = done(&self.buf) {
                    return value;
                }
                let mut chunk = [0; 4096];
                let count = self.stream.read(&mut chunk).unwrap();
                assert!(count > 0, "connection closed early: {:?}", self.buf);
                self.buf.extend_from_slice(&chunk[..count]);
            }
        }
    }

    #[test]
    fn answers_every_route_on_one_keep_alive_connection() {
        let server = TestServer::start(false);
        let mut client = server.connect();
        let up = client.get("/up");
        assert_eq!((up.status, up.body.as_str()), (200, "OK\n"));
        assert_eq!(up.header("content-length"), Some("3"));
        assert_eq!(up.header("connection"), None);
        let version = client.get("/version");
        assert_eq!((version.status, version.body.as_str()), (200, "v-test\n"));
        let root = client.get("/");
        assert_eq!(root.body, "hello from hoist-testapp v-test on testhost\n");
        let missing = client.get("/missing");
        assert_eq!(
            (missing.status, missing.body.as_str()),
            (404, "not found\n")
        );
        client.send("GET /headers HTTP/1.1\r\nHost: test\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n");
        let headers = client.read_response();
        assert_eq!(headers.body, "Host: test\nX-Forwarded-For: 10.0.0.1\n");
        let lines = server.lines();
        assert!(lines[0].starts_with("GET /up 200 "), "{lines:?}");
        assert!(lines[3].starts_with("GET /missing 404 "), "{lines:?}");
        assert_eq!(server.stop().unfinished, 0);
    }

    #[test]
    fn slow_answers_after_its_delay() {
        let server = TestServer::start(false);
        let mut client = server.connect();
        let started = Instant::now();
        let slow = client.get("/slow?ms=150");
        assert!(started.elapsed() >= Duration::from_millis(150));
        assert_eq!(
            (slow.status, slow.body.as_str()),
            (200, "slow v-test 150ms\n")
        );
        server.stop();
    }

    #[test]
    fn stream_sends_each_chunk_as_it_is_produced_then_keeps_the_connection() {
        let server = TestServer::start(false);
        let mut client = server.connect();
        let stream = client.get("/stream?chunks=3&ms=150");
        assert_eq!(stream.status, 200);
        assert_eq!(stream.header("transfer-encoding"), Some("chunked"));
        assert_eq!(stream.header("content-length"), None);
        assert_eq!(
            stream.body,
            "chunk 1 v-test\nchunk 2 v-test\nchunk 3 v-test\n"
        );
        let arrivals = &stream.chunk_arrivals;
        assert_eq!(arrivals.len(), 3);
        assert!(
            arrivals[2] - arrivals[0] >= Duration::from_millis(250),
            "{arrivals:?}"
        );
        assert_eq!(client.get("/up").status, 200);
        server.stop();
    }

    #[test]
    fn discards_request_bodies_between_pipelined_requests() {
        let server = TestServer::start(false);
        let mut client = server.connect();
        client.send(concat!(
            "GET /up HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
            "GET /version HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n",
            "3;x=y\r\nabc\r\n0\r\nTrailer: 1\r\n\r\n",
            "\r\nHEAD /up HTTP/1.1\r\nHost: t\r\n\r\n",
        ));
        assert_eq!(client.read_response().body, "OK\n");
        assert_eq!(client.read_response().body, "v-test\n");
        let head = client.read_response_head();
        assert_eq!(head.header("content-length"), Some("3"));
        assert_eq!(client.get("/up").body, "OK\n");
        server.stop();
    }

    #[test]
    fn connection_close_and_http10_end_the_connection() {
        let server = TestServer::start(false);
        let mut client = server.connect();
        client.send("GET /up HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        assert_eq!(client.read_response().header("connection"), Some("close"));
        assert!(client.is_closed());
        drop(client);

        let mut client = server.connect();
        client.send("GET /stream?chunks=2&ms=0 HTTP/1.0\r\n\r\n");
        let response = client.read_response();
        assert_eq!(response.header("transfer-encoding"), None);
        let mut body = String::new();
        client.stream.read_to_string(&mut body).unwrap();
        let body = String::from_utf8(client.buf.clone()).unwrap() + &body;
        assert_eq!(body, "chunk 1 v-test\nchunk 2 v-test\n");
        drop(client);
        server.stop();
    }

    #[test]
    fn malformed_requests_get_400_and_the_connection_closes() {
        let server = TestServer::start(false);
        let mut client = server.connect();
        client.send("GET /up HTTP/1.1\r\nHost: t\r\nBad Header: x\r\n\r\nGET /up HTTP/1.1\r\n\r\n");
        let response = client.read_response();
        assert_eq!(
            (response.status, response.body.as_str()),
            (400, "invalid header name\n")
        );
        assert!(client.is_closed());
        drop(client);
        let mut client = server.connect();
        client.send("GET /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
        assert_eq!(client.read_response().status, 400);
        drop(client);
        assert!(
            server
                .lines()
                .iter()
                .any(|line| line == "- - 400 0ms (invalid header name)")
        );
        server.stop();
    }

    #[test]
    fn broken_app_fails_health_checks() {
        let server = TestServer::start(true);
        let up = server.connect().get("/up");
        assert_eq!(up.status, 503);
        let lines = server.lines();
        assert!(
            lines.contains(&"warning: health check failing on purpose (APP_BROKEN)".to_string())
        );
        server.stop();
    }

    #[test]
    fn shutdown_finishes_in_flight_requests_and_closes_idle_connections() {
        let server = TestServer::start(false);
        let address = server.address;
        let mut idle = server.connect();
        assert_eq!(idle.get("/up").status, 200);
        let mut busy = server.connect();
        busy.send("GET /slow?ms=300 HTTP/1.1\r\nHost: t\r\n\r\n");
        thread::sleep(Duration::from_millis(100));
        let shutdown = Arc::clone(&server.shutdown);
        let stopper = thread::spawn(move || server.stop());
        thread::sleep(Duration::from_millis(50));
        assert!(shutdown.is_triggered());
        assert!(
            idle.is_closed(),
            "idle keep-alive connection should close at once"
        );
        let slow = busy.read_response();
        assert_eq!(
            (slow.status, slow.header("connection")),
            (200, Some("close"))
        );
        drop(busy);
        let report = stopper.join().unwrap();
        assert_eq!(report.unfinished, 0);
        assert!(
            TcpStream::connect(address).is_err(),
            "listener should be closed"
        );
    }
}
