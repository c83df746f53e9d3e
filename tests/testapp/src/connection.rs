//! One client connection: reads request heads and request bodies (keeping only a digest), asks the [`App`]
//! for each response, writes it with HTTP/1.1 framing and decides between keep-alive and
//! close. Wire parsing is in http.rs; accepting and draining is in server.rs.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use crate::app::{App, Body, BodyDigest, Response};
use crate::http::{self, BodyFraming, HeadError, Request, ResponseFraming, ResponseHead, Version};
use crate::log::Log;
use crate::shutdown::{self, Readiness, Shutdown};

/// How long an idle keep-alive connection stays open. Longer than the idle timeout of common
/// proxy connection pools (90s in hyper), so a proxy never reuses a connection we just closed.
pub const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest wait for more bytes once a request head or body has started.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest request head accepted; larger ones get 431.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Longest chunk-size or trailer line in a chunked request body.
const MAX_LINE_BYTES: usize = 8 * 1024;
/// How long a closing connection keeps reading what the client still sends, so the kernel
/// does not answer it with a reset that could destroy our last response in flight.
const LINGER_TIMEOUT: Duration = Duration::from_secs(1);

/// Serves requests on `stream` until the client closes, asks to close, misbehaves, stays idle
/// too long, or `shutdown` is triggered while it is idle.
pub fn serve(stream: TcpStream, app: &App, shutdown: &Shutdown, log: &Log) {
    let mut connection = Connection {
        stream,
        buf: Vec::new(),
    };
    if connection.serve(app, shutdown, log) == Closing::AfterResponse {
        connection.linger_close();
    }
}

/// Why reading a request stopped.
#[derive(Debug)]
enum ReadError {
    /// EOF or a socket error: there is nobody to answer.
    Closed,
    TimedOut,
    Head(HeadError),
    Body(&'static str),
}

/// How a connection ends: after a response, the client may still be sending (a body we
/// did not read, a pipelined request), so we linger; otherwise we just close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closing {
    Quietly,
    AfterResponse,
}

/// Outcome of one read attempt.
enum Fill {
    Read,
    Eof,
    TimedOut,
    ShuttingDown,
}

struct Connection {
    stream: TcpStream,
    /// Bytes received but not yet consumed (possibly the start of a pipelined request).
    buf: Vec<u8>,
}

impl Connection {
    fn serve(&mut self, app: &App, shutdown: &Shutdown, log: &Log) -> Closing {
        loop {
            let head_length = match self.read_head(shutdown) {
                Ok(Some(length)) => length,
                Ok(None) => return Closing::Quietly,
                Err(error) => return self.reject(None, error, log),
            };
            let started = Instant::now();
            let parsed = http::parse_head(&self.buf[..head_length]);
            self.buf.drain(..head_length);
            let request = match parsed {
                Ok(request) => request,
                Err(error) => return self.reject(None, ReadError::Head(error), log),
            };
            if request.expects_continue && self.stream.write_all(http::CONTINUE).is_err() {
                return Closing::Quietly;
            }
            let mut digest = BodyDigest::default();
            if let Err(error) = self.discard_body(request.body, &mut digest) {
                return self.reject(Some(&request), error, log);
            }

            let response = app.respond(&request, &digest, log);
            let close = !request.keep_alive || shutdown.is_triggered();
            let written = self.write_response(&request, &response, close);
            let outcome = match written {
                Ok(()) => "",
                Err(_) => " (client went away)",
            };
            log.info(&format!(
                "{} {} {} {}ms{outcome}",
                request.method,
                request.target,
                response.status,
                started.elapsed().as_millis()
            ));
            if written.is_err() {
                return Closing::Quietly;
            }
            if close {
                return Closing::AfterResponse;
            }
        }
    }

    /// Reads until a whole request head is buffered and returns its length, or `None` when
    /// the connection should close quietly (EOF, idle timeout, or shutdown while idle).
    fn read_head(&mut self, shutdown: &Shutdown) -> Result<Option<usize>, ReadError> {
        loop {
            // RFC 9112 §2.2: ignore empty lines before a request line.
            while self.buf.starts_with(b"\r\n") {
                self.buf.drain(..2);
            }
            if let Some(length) = http::find_head_end(&self.buf) {
                if length > MAX_HEAD_BYTES {
                    return Err(ReadError::Head(HeadError::TooLarge));
                }
                return Ok(Some(length));
            }
            if self.buf.len() > MAX_HEAD_BYTES {
                return Err(ReadError::Head(HeadError::TooLarge));
            }
            let idle = self.buf.is_empty();
            if !idle {
                self.fill_required()?;
                continue;
            }
            match self.fill(Some(shutdown), KEEP_ALIVE_TIMEOUT)? {
                Fill::Read => {}
                Fill::Eof | Fill::TimedOut | Fill::ShuttingDown => return Ok(None),
            }
        }
    }

    fn discard_body(
        &mut self,
        framing: BodyFraming,
        digest: &mut BodyDigest,
    ) -> Result<(), ReadError> {
        match framing {
            BodyFraming::None => Ok(()),
            BodyFraming::Length(length) => self.discard_exact(length, digest),
            BodyFraming::Chunked => self.discard_chunked(digest),
        }
    }

    fn discard_exact(
        &mut self,
        mut remaining: u64,
        digest: &mut BodyDigest,
    ) -> Result<(), ReadError> {
        loop {
            let buffered = usize::try_from(remaining)
                .map_or(self.buf.len(), |remaining| remaining.min(self.buf.len()));
            digest.update(&self.buf[..buffered]);
            self.buf.drain(..buffered);
            remaining -= buffered as u64;
            if remaining == 0 {
                return Ok(());
            }
            self.fill_required()?;
        }
    }

    fn discard_chunked(&mut self, digest: &mut BodyDigest) -> Result<(), ReadError> {
        loop {
            let line = self.read_line()?;
            let size =
                http::parse_chunk_size(&line).ok_or(ReadError::Body("invalid chunk size"))?;
            if size == 0 {
                break;
            }
            self.discard_exact(size, digest)?;
            if !self.read_line()?.is_empty() {
                return Err(ReadError::Body("chunk data longer than its size"));
            }
        }
        for _ in 0..=http::MAX_HEADERS {
            if self.read_line()?.is_empty() {
                return Ok(());
            }
        }
        Err(ReadError::Body("too many trailer lines"))
    }

    /// Reads one CRLF-terminated line of a chunked body and returns it without the CRLF.
    fn read_line(&mut self) -> Result<Vec<u8>, ReadError> {
        loop {
            if let Some(end) = http::find(&self.buf, b"\r\n") {
                let line = self.buf[..end].to_vec();
                self.buf.drain(..end + 2);
                return Ok(line);
            }
            if self.buf.len() > MAX_LINE_BYTES {
                return Err(ReadError::Body("chunk line too long"));
            }
            self.fill_required()?;
        }
    }

    /// Reads more bytes of a request already in progress; EOF or a timeout is an error.
    fn fill_required(&mut self) -> Result<(), ReadError> {
        match self.fill(None, READ_TIMEOUT)? {
            Fill::Read => Ok(()),
            Fill::Eof | Fill::ShuttingDown => Err(ReadError::Closed),
            Fill::TimedOut => Err(ReadError::TimedOut),
        }
    }

    fn fill(&mut self, shutdown: Option<&Shutdown>, timeout: Duration) -> Result<Fill, ReadError> {
        match shutdown::wait_readable(self.stream.as_raw_fd(), shutdown, Some(timeout)) {
            Ok(Readiness::Readable) => {}
            Ok(Readiness::ShuttingDown) => return Ok(Fill::ShuttingDown),
            Ok(Readiness::TimedOut) => return Ok(Fill::TimedOut),
            Err(_) => return Err(ReadError::Closed),
        }
        let mut chunk = [0; 16 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => Ok(Fill::Eof),
            Ok(count) => {
                self.buf.extend_from_slice(&chunk[..count]);
                Ok(Fill::Read)
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => Ok(Fill::Read),
            Err(_) => Err(ReadError::Closed),
        }
    }

    /// Answers a request that cannot be served (if anyone is listening) and logs it; the
    /// connection closes after this.
    fn reject(&mut self, request: Option<&Request>, error: ReadError, log: &Log) -> Closing {
        let (status, message) = match &error {
            ReadError::Closed => return Closing::Quietly,
            ReadError::TimedOut => (408, "timed out reading the request"),
            ReadError::Head(error) => (error.status(), error.message()),
            ReadError::Body(message) => (400, *message),
        };
        let response = Response::text(status, &format!("{message}\n"));
        let (method, target) = request.map_or(("-", "-"), |request| {
            (request.method.as_str(), request.target.as_str())
        });
        let head_only = request.is_some_and(|request| request.method == "HEAD");
        let written = self.write_full(&response, head_only, true);
        log.info(&format!("{method} {target} {status} 0ms ({message})"));
        match written {
            Ok(()) => Closing::AfterResponse,
            Err(_) => Closing::Quietly,
        }
    }

    fn write_response(
        &mut self,
        request: &Request,
        response: &Response,
        close: bool,
    ) -> io::Result<()> {
        let head_only = request.method == "HEAD";
        let plan = match &response.body {
            Body::Full(_) => return self.write_full(response, head_only, close),
            Body::Stream(plan) => plan,
        };
        // HTTP/1.0 clients do not understand chunked: delimit by closing instead (and a 1.0
        // request never keeps the connection alive, so `close` is already set).
        let framing = match request.version {
            Version::Http11 => ResponseFraming::Chunked,
            Version::Http10 => ResponseFraming::UntilClose,
        };
        self.write_head(response, framing, close)?;
        if head_only {
            return Ok(());
        }
        for index in 1..=plan.chunks {
            if index > 1 {
                thread::sleep(plan.interval);
            }
            let text = plan.chunk(index);
            match framing {
                ResponseFraming::Chunked => self
                    .stream
                    .write_all(&http::encode_chunk(text.as_bytes()))?,
                _ => self.stream.write_all(text.as_bytes())?,
            }
        }
        if framing == ResponseFraming::Chunked {
            self.stream.write_all(http::LAST_CHUNK)?;
        }
        Ok(())
    }

    fn write_full(&mut self, response: &Response, head_only: bool, close: bool) -> io::Result<()> {
        let Body::Full(body) = &response.body else {
            return Err(io::Error::other("write_full needs a full body"));
        };
        let framing = ResponseFraming::Length(body.len() as u64);
        let mut bytes = encode_head(response, framing, close);
        if !head_only {
            bytes.extend_from_slice(body);
        }
        self.stream.write_all(&bytes)
    }

    fn write_head(
        &mut self,
        response: &Response,
        framing: ResponseFraming,
        close: bool,
    ) -> io::Result<()> {
        self.stream
            .write_all(&encode_head(response, framing, close))
    }

    /// Closes our side, then reads and drops what the client still sends until it closes
    /// too or [`LINGER_TIMEOUT`] passes.
    fn linger_close(&mut self) {
        if self.stream.shutdown(std::net::Shutdown::Write).is_err() {
            return;
        }
        let deadline = Instant::now() + LINGER_TIMEOUT;
        let mut sink = [0; 4096];
        while let Some(remaining) = deadline.checked_duration_since(Instant::now()) {
            if remaining.is_zero() || self.stream.set_read_timeout(Some(remaining)).is_err() {
                return;
            }
            match self.stream.read(&mut sink) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }
}

fn encode_head(response: &Response, framing: ResponseFraming, close: bool) -> Vec<u8> {
    let allow = response.allow.map(|methods| ("Allow", methods));
    let extra_headers: Vec<(&str, &str)> = allow.into_iter().collect();
    let head = ResponseHead {
        status: response.status,
        framing,
        close,
        extra_headers: &extra_headers,
    };
    http::encode_response_head(&head, &http::http_date(SystemTime::now()))
}
