//! HTTP/1.1 wire format as pure functions: parsing a request head (request line, headers,
//! body framing, keep-alive), query strings and chunk-size lines, and encoding response heads
//! and chunks. No I/O here: connection.rs reads and writes the socket.

use std::time::{SystemTime, UNIX_EPOCH};

/// Most header lines accepted in one request head (or trailer section).
pub const MAX_HEADERS: usize = 100;

/// The terminating chunk of a chunked body, with an empty trailer section.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// The interim response sent before reading a body the client is holding back.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// How the request body is delimited (RFC 9112 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    None,
    Length(u64),
    Chunked,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// As received, case preserved.
    pub name: String,
    /// As received, without surrounding whitespace.
    pub value: Vec<u8>,
}

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The request target as received, for logging.
    pub target: String,
    /// The path of the target, without the query (absolute-form targets reduced to it).
    pub path: String,
    /// The query string without `?`, empty when there is none.
    pub query: String,
    pub version: Version,
    pub headers: Vec<Header>,
    pub body: BodyFraming,
    /// Whether the connection may serve another request after this one.
    pub keep_alive: bool,
    /// Whether the client waits for `100 Continue` before sending the body.
    pub expects_continue: bool,
}

/// Why a request head was rejected; the connection is closed after the error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadError {
    Malformed(&'static str),
    UnsupportedVersion,
    TooLarge,
}

impl HeadError {
    pub fn status(&self) -> u16 {
        match self {
            HeadError::Malformed(_) => 400,
            HeadError::UnsupportedVersion => 505,
            HeadError::TooLarge => 431,
        }
    }

    pub fn message(&self) -> &'static str {
        match self {
            HeadError::Malformed(reason) => reason,
            HeadError::UnsupportedVersion => "only HTTP/1.0 and HTTP/1.1 are supported",
            HeadError::TooLarge => "request head too large",
        }
    }
}

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFraming {
    Length(u64),
    Chunked,
    /// Body ends when the connection closes (streams to HTTP/1.0 clients).
    UntilClose,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead<'a> {
    pub status: u16,
    pub framing: ResponseFraming,
    /// Sends `Connection: close`; the caller closes after the body.
    pub close: bool,
    /// Extra header lines such as `("Allow", "GET, HEAD")`.
    pub extra_headers: &'a [(&'a str, &'a str)],
}

impl Request {
    /// Values of every header named `name` (case-insensitive), in order.
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |header| header.name.eq_ignore_ascii_case(name))
            .map(|header| header.value.as_slice())
    }
}

/// Returns the length of the request head at the start of `buf`, including the blank line
/// that ends it, or `None` if it has not fully arrived.
pub fn find_head_end(buf: &[u8]) -> Option<usize> {
    find(buf, b"\r\n\r\n").map(|start| start + 4)
}

/// Parses a request head: the bytes up to and including the blank line that ends it.
pub fn parse_head(head: &[u8]) -> Result<Request, HeadError> {
    let head = head.strip_suffix(b"\r\n\r\n").ok_or(HeadError::Malformed(
        "request head is not terminated by a blank line",
    ))?;
    let mut lines = crlf_lines(head);
    let request_line = lines.next().unwrap_or_default();
    let (method, target, version) = parse_request_line(request_line)?;
    let (path, query) = split_target(target)?;

    let mut headers = Vec::new();
    for line in lines {
        if headers.len() == MAX_HEADERS {
            return Err(HeadError::TooLarge);
        }
        headers.push(parse_header_line(line)?);
    }

    let mut request = Request {
        method: method.to_string(),
        target: target.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        version,
        headers,
        body: BodyFraming::None,
        keep_alive: false,
        expects_continue: false,
    };
    request.body = body_framing(&request)?;
    if version == Version::Http11 && request.header_values("host").count() != 1 {
        return Err(HeadError::Malformed(
            "HTTP/1.1 request needs exactly one Host header",
        ));
    }
    let close = request
        .header_values("connection")
        .flat_map(list_tokens)
        .any(|token| token.eq_ignore_ascii_case("close"));
    // HTTP/1.0 connections always close: this server does not do 1.0 keep-alive.
    request.keep_alive = version == Version::Http11 && !close;
    request.expects_continue = version == Version::Http11
        && request.body != BodyFraming::None
        && request
            .header_values("expect")
            .any(|value| value.eq_ignore_ascii_case(b"100-continue"));
    Ok(request)
}

/// Parses a chunk-size line (without its CRLF): hex digits, optionally followed by extensions.
pub fn parse_chunk_size(line: &[u8]) -> Option<u64> {
    let digits = line.split(|&byte| byte == b';').next().unwrap_or_default();
    let digits = trim_whitespace(digits);
    if digits.is_empty() || digits.len() > 16 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let digits = std::str::from_utf8(digits).ok()?;
    u64::from_str_radix(digits, 16).ok()
}

/// Returns the percent-decoded value of the first `name` parameter in `query`.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query
        .split('&')
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .find(|(key, _)| percent_decode(key) == name)
        .map(|(_, value)| percent_decode(value))
}

/// Decodes `%XX` escapes and `+` (as a space); malformed escapes are kept literally.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = bytes
            .get(index + 1..index + 3)
            .filter(|_| bytes[index] == b'%')
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (bytes[index], escaped) {
            (_, Some(byte)) => {
                decoded.push(byte);
                index += 3;
            }
            (b'+', None) => {
                decoded.push(b' ');
                index += 1;
            }
            (byte, None) => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// Encodes a response head; every response is `text/plain` and carries its framing.
pub fn encode_response_head(head: &ResponseHead<'_>, date: &str) -> Vec<u8> {
    let mut text = format!(
        "HTTP/1.1 {} {}\r\nDate: {date}\r\nContent-Type: text/plain; charset=utf-8\r\n",
        head.status,
        reason_phrase(head.status)
    );
    match head.framing {
        ResponseFraming::Length(length) => text.push_str(&format!("Content-Length: {length}\r\n")),
        ResponseFraming::Chunked => text.push_str("Transfer-Encoding: chunked\r\n"),
        ResponseFraming::UntilClose => {}
    }
    if head.close {
        text.push_str("Connection: close\r\n");
    }
    for (name, value) in head.extra_headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("\r\n");
    text.into_bytes()
}

/// Encodes one chunk of a chunked body; `data` must not be empty (that is [`LAST_CHUNK`]).
pub fn encode_chunk(data: &[u8]) -> Vec<u8> {
    let mut chunk = format!("{:x}\r\n", data.len()).into_bytes();
    chunk.extend_from_slice(data);
    chunk.extend_from_slice(b"\r\n");
    chunk
}

/// Formats `time` as an IMF-fixdate for the `Date` header: `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn http_date(time: SystemTime) -> String {
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let seconds = time
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let days = seconds / 86_400;
    let (year, month, day) = civil_from_days(days);
    let time_of_day = seconds % 86_400;
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        WEEKDAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        time_of_day / 3600,
        time_of_day / 60 % 60,
        time_of_day % 60
    )
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

fn parse_request_line(line: &[u8]) -> Result<(&str, &str, Version), HeadError> {
    let line = std::str::from_utf8(line)
        .ok()
        .filter(|line| {
            line.bytes()
                .all(|byte| byte.is_ascii_graphic() || byte == b' ')
        })
        .ok_or(HeadError::Malformed("invalid request line"))?;
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::Malformed("invalid request line"));
    };
    if method.is_empty() || !method.bytes().all(is_token_byte) {
        return Err(HeadError::Malformed("invalid method"));
    }
    let version = match version {
        "HTTP/1.1" => Version::Http11,
        "HTTP/1.0" => Version::Http10,
        other => {
            let digits = other.strip_prefix("HTTP/").map(str::as_bytes);
            return Err(match digits {
                Some([major, b'.', minor]) if major.is_ascii_digit() && minor.is_ascii_digit() => {
                    HeadError::UnsupportedVersion
                }
                _ => HeadError::Malformed("invalid HTTP version"),
            });
        }
    };
    Ok((method, target, version))
}

/// Splits a request target into path and query, accepting origin-form (`/a?b`),
/// absolute-form (`http://host/a?b`) and asterisk-form (`*`).
fn split_target(target: &str) -> Result<(&str, &str), HeadError> {
    let origin = if target.starts_with('/') || target == "*" {
        target
    } else {
        let lower = target.to_ascii_lowercase();
        let after_scheme = if lower.starts_with("http://") {
            &target[7..]
        } else if lower.starts_with("https://") {
            &target[8..]
        } else {
            return Err(HeadError::Malformed("invalid request target"));
        };
        after_scheme
            .find(['/', '?'])
            .map_or("", |index| &after_scheme[index..])
    };
    let (path, query) = origin.split_once('?').unwrap_or((origin, ""));
    // `http://host` and `http://host?q` have an empty path, which means `/`.
    Ok((if path.is_empty() { "/" } else { path }, query))
}

fn parse_header_line(line: &[u8]) -> Result<Header, HeadError> {
    if line.starts_with(b" ") || line.starts_with(b"\t") {
        return Err(HeadError::Malformed("obsolete header line folding"));
    }
    let colon = line
        .iter()
        .position(|&byte| byte == b':')
        .ok_or(HeadError::Malformed("header line without a colon"))?;
    let name = &line[..colon];
    if name.is_empty() || !name.iter().copied().all(is_token_byte) {
        return Err(HeadError::Malformed("invalid header name"));
    }
    let value = trim_whitespace(&line[colon + 1..]);
    if value
        .iter()
        .any(|&byte| (byte < 0x20 && byte != b'\t') || byte == 0x7f)
    {
        return Err(HeadError::Malformed("invalid header value"));
    }
    Ok(Header {
        name: String::from_utf8_lossy(name).into_owned(),
        value: value.to_vec(),
    })
}

fn body_framing(request: &Request) -> Result<BodyFraming, HeadError> {
    let codings: Vec<String> = request
        .header_values("transfer-encoding")
        .flat_map(list_tokens)
        .map(|token| token.to_ascii_lowercase())
        .collect();
    let mut lengths = request.header_values("content-length").map(|value| {
        std::str::from_utf8(value)
            .ok()
            .filter(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|digits| digits.parse::<u64>().ok())
            .ok_or(HeadError::Malformed("invalid Content-Length"))
    });
    let length = match lengths.next() {
        None => None,
        Some(first) => {
            let first = first?;
            for other in lengths {
                if other? != first {
                    return Err(HeadError::Malformed("conflicting Content-Length headers"));
                }
            }
            Some(first)
        }
    };
    match (codings.last(), length) {
        (None, None) => Ok(BodyFraming::None),
        (None, Some(0)) => Ok(BodyFraming::None),
        (None, Some(length)) => Ok(BodyFraming::Length(length)),
        (Some(_), Some(_)) => Err(HeadError::Malformed(
            "both Transfer-Encoding and Content-Length",
        )),
        (Some(last), None) if last == "chunked" => Ok(BodyFraming::Chunked),
        (Some(_), None) => Err(HeadError::Malformed("request body is not chunked last")),
    }
}

/// Splits a comma-separated header value into its non-empty trimmed elements.
fn list_tokens(value: &[u8]) -> impl Iterator<Item = String> + '_ {
    value
        .split(|&byte| byte == b',')
        .map(trim_whitespace)
        .filter(|token| !token.is_empty())
        .map(|token| String::from_utf8_lossy(token).into_owned())
}

fn crlf_lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(bytes);
    std::iter::from_fn(move || {
        let current = rest?;
        match find(current, b"\r\n") {
            Some(index) => {
                rest = Some(&current[index + 2..]);
                Some(&current[..index])
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn trim_whitespace(bytes: &[u8]) -> &[u8] {
    let is_space = |byte: &u8| *byte == b' ' || *byte == b'\t';
    let start = bytes
        .iter()
        .position(|b| !is_space(b))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_space(b))
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// `tchar` from RFC 9110 §5.6.2.
fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// Converts days since 1970-01-01 to a (year, month, day) civil date (Howard Hinnant's
/// `civil_from_days`, restricted to dates after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn parse(text: &str) -> Result<Request, HeadError> {
        parse_head(text.as_bytes())
    }

    #[test]
    fn parses_origin_form_request_with_query_and_headers() {
        let request = parse("GET /slow?ms=20&x=1 HTTP/1.1\r\nHost: a\r\nX-Thing:  v 1 \r\n\r\n")
            .expect("valid request");
        assert_eq!(request.method, "GET");
        assert_eq!(request.target, "/slow?ms=20&x=1");
        assert_eq!(
            (request.path.as_str(), request.query.as_str()),
            ("/slow", "ms=20&x=1")
        );
        assert_eq!(request.version, Version::Http11);
        assert_eq!(request.headers[1].name, "X-Thing");
        assert_eq!(request.headers[1].value, b"v 1");
        assert_eq!(request.body, BodyFraming::None);
        assert!(request.keep_alive);
    }

    #[test]
    fn reduces_absolute_form_targets_to_their_path() {
        let request = parse("GET http://example.com:8080/up?a=b HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("valid request");
        assert_eq!(
            (request.path.as_str(), request.query.as_str()),
            ("/up", "a=b")
        );
        let request = parse("GET https://example.com?q HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert_eq!((request.path.as_str(), request.query.as_str()), ("/", "q"));
    }

    #[test]
    fn connection_close_and_http10_disable_keep_alive() {
        let close = parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Close\r\n\r\n");
        assert!(!close.unwrap().keep_alive);
        let http10 = parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert!(!http10.unwrap().keep_alive);
    }

    #[test]
    fn detects_body_framing() {
        let length = parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n").unwrap();
        assert_eq!(length.body, BodyFraming::Length(12));
        let chunked =
            parse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
        assert_eq!(chunked.unwrap().body, BodyFraming::Chunked);
        let repeated =
            parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n");
        assert_eq!(repeated.unwrap().body, BodyFraming::Length(3));
        let expect =
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n";
        assert!(parse(expect).unwrap().expects_continue);
    }

    #[test]
    fn rejects_malformed_heads() {
        let cases = [
            "GET /\r\n\r\n",
            "GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
            "G(T / HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET nope HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET / HTTX/1.1\r\nHost: a\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n folded\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
        ];
        for case in cases {
            let error = parse(case).expect_err(case);
            assert_eq!(error.status(), 400, "{case:?}: {error:?}");
        }
        let version = parse("GET / HTTP/2.0\r\nHost: a\r\n\r\n").unwrap_err();
        assert_eq!(version, HeadError::UnsupportedVersion);
        let too_many = format!(
            "GET / HTTP/1.1\r\n{}\r\n",
            "X: y\r\n".repeat(MAX_HEADERS + 1)
        );
        assert_eq!(parse(&too_many).unwrap_err(), HeadError::TooLarge);
    }

    #[test]
    fn finds_the_end_of_a_head() {
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r\nrest"), Some(18));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\nHost: a\r\n"), None);
    }

    #[test]
    fn parses_query_parameters() {
        assert_eq!(
            query_param("ms=250&chunks=3", "chunks").as_deref(),
            Some("3")
        );
        assert_eq!(query_param("a=1&a=2", "a").as_deref(), Some("1"));
        assert_eq!(query_param("flag&x=1", "flag").as_deref(), Some(""));
        assert_eq!(query_param("m%73=5", "ms").as_deref(), Some("5"));
        assert_eq!(query_param("", "ms"), None);
        assert_eq!(percent_decode("a+b%20c%zz%4"), "a b c%zz%4");
    }

    #[test]
    fn parses_chunk_size_lines() {
        assert_eq!(parse_chunk_size(b"1a"), Some(26));
        assert_eq!(parse_chunk_size(b"0"), Some(0));
        assert_eq!(parse_chunk_size(b"A ; name=value"), Some(10));
        assert_eq!(parse_chunk_size(b""), None);
        assert_eq!(parse_chunk_size(b"xyz"), None);
        assert_eq!(parse_chunk_size(b"+5"), None);
        assert_eq!(parse_chunk_size(b"11111111111111111"), None);
    }

    #[test]
    fn encodes_response_heads_and_chunks() {
        let head = ResponseHead {
            status: 405,
            framing: ResponseFraming::Length(3),
            close: true,
            extra_headers: &[("Allow", "GET, HEAD")],
        };
        let text = String::from_utf8(encode_response_head(&head, "DATE")).unwrap();
        assert_eq!(
            text,
            "HTTP/1.1 405 Method Not Allowed\r\nDate: DATE\r\n\
             Content-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\n\
             Connection: close\r\nAllow: GET, HEAD\r\n\r\n"
        );
        assert_eq!(
            encode_chunk(b"0123456789abcdefg"),
            b"11\r\n0123456789abcdefg\r\n"
        );
    }

    #[test]
    fn formats_http_dates() {
        let time = UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(http_date(time), "Sun, 06 Nov 1994 08:49:37 GMT");
        let leap_day = UNIX_EPOCH + Duration::from_secs(1_709_210_096);
        assert_eq!(http_date(leap_day), "Thu, 29 Feb 2024 12:34:56 GMT");
    }
}
