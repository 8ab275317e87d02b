//! `[ready] http` and `[health] http`: the URL's rules (an `http://` URL
//! whose host is an IP literal or `localhost`, an address of this
//! container's own) and a tiny HTTP/1.1 GET that reads the status line only.
//!
//! Deliberately small: no DNS (a probe must not hang on a resolver, and
//! `localhost` is 127.0.0.1), no TLS, no redirects followed, no body read.
//! A probe asks "does this server answer 2xx", so the status line is all
//! it needs; reading it is bounded in bytes and in time.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The most bytes read from an answer in search of the end of its status
/// line (`HTTP/1.1 200 OK\r\n` is 17; a long reason phrase still fits).
const STATUS_LINE_MAX: usize = 1024;

/// A validated probe URL, with its request made once; shared by every
/// probe of the service (a clone is a reference count).
#[derive(Clone, PartialEq, Eq)]
pub struct HttpUrl(Arc<Url>);

#[derive(PartialEq, Eq)]
struct Url {
    /// As written in service.toml, for messages.
    url: String,
    addr: SocketAddr,
    /// The whole request, made once at load.
    request: Vec<u8>,
}

impl fmt::Debug for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HttpUrl({:?})", self.0.url)
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.url)
    }
}

/// Why a URL is refused: the message, and the byte offset in the URL it is
/// about (for line:column in service.toml).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UrlError {
    pub offset: usize,
    pub message: String,
}

fn refuse<T>(offset: usize, message: impl Into<String>) -> Result<T, UrlError> {
    Err(UrlError {
        offset,
        message: message.into(),
    })
}

impl HttpUrl {
    /// Parses and checks `url`; `is_local` tells whether a non-loopback IP
    /// is one of this container's own addresses ([`binds_locally`] in
    /// production, a fake in tests).
    pub fn parse(url: &str, is_local: &dyn Fn(IpAddr) -> bool) -> Result<HttpUrl, UrlError> {
        let Some(rest) = strip_prefix_ignore_case(url, "http://") else {
            if strip_prefix_ignore_case(url, "https://").is_some() {
                return refuse(
                    0,
                    "https is not supported: a probe of a server in this container needs no TLS (write http://)",
                );
            }
            return refuse(0, "write an http:// URL, e.g. \"http://127.0.0.1:8080/healthz\"");
        };
        let start = url.len() - rest.len();
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..end];
        let mut target = &rest[end..];
        if let Some(hash) = target.find('#') {
            target = &target[..hash]; // a fragment is never sent
        }
        if authority.contains('@') {
            return refuse(start, "a user or password in the URL is not supported");
        }
        let (host, port) = split_host_port(authority).map_err(|message| UrlError { offset: start, message })?;
        let port = match port {
            None => 80,
            Some(text) => match text.parse::<u16>() {
                Ok(port) if port > 0 => port,
                _ => {
                    let at = start + authority.len() - text.len();
                    return refuse(at, format!("port {text:?}: write a number from 1 to 65535"));
                }
            },
        };
        let ip = if host.eq_ignore_ascii_case("localhost") {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            let literal = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
            let parsed = match literal {
                Some(v6) => v6.parse::<std::net::Ipv6Addr>().map(IpAddr::V6).ok(),
                None => host.parse::<Ipv4Addr>().map(IpAddr::V4).ok(),
            };
            match parsed {
                Some(ip) => ip,
                None => {
                    return refuse(
                        start,
                        format!(
                            "host {host:?}: write an IP address or `localhost` (host names are not looked up: no DNS)"
                        ),
                    );
                }
            }
        };
        check_local(ip, is_local).map_err(|message| UrlError { offset: start, message })?;
        if let Some(bad) = target.find(|c: char| !c.is_ascii_graphic()) {
            return refuse(
                start + end + bad,
                "a space, control or non-ASCII character in the path: percent-encode it (%20)",
            );
        }
        // The request target starts with `/` (a query alone is `/?q`).
        let slash = if target.starts_with('/') { "" } else { "/" };
        let path = format!("{slash}{target}");
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: baseinit\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        );
        Ok(HttpUrl(Arc::new(Url {
            url: url.to_owned(),
            addr: SocketAddr::new(ip, port),
            request: request.into_bytes(),
        })))
    }

    /// The address probed.
    pub fn addr(&self) -> SocketAddr {
        self.0.addr
    }

    /// One GET within `timeout`: the answer's status code.
    pub async fn get(&self, timeout: Duration) -> Result<u16, String> {
        match tokio::time::timeout(timeout, self.exchange()).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
        }
    }

    /// True when a GET within `timeout` answers 2xx.
    pub async fn answers_2xx(&self, timeout: Duration) -> bool {
        matches!(self.get(timeout).await, Ok(status) if (200..300).contains(&status))
    }

    async fn exchange(&self) -> Result<u16, String> {
        let mut stream = tokio::net::TcpStream::connect(self.0.addr)
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        stream
            .write_all(&self.0.request)
            .await
            .map_err(|e| format!("cannot send the request: {e}"))?;
        // Up to the first newline; the stream is then dropped, which closes
        // the connection: the rest of the answer is never read.
        let mut answer = [0u8; STATUS_LINE_MAX];
        let mut len = 0;
        while len < STATUS_LINE_MAX {
            let n = stream
                .read(&mut answer[len..])
                .await
                .map_err(|e| format!("cannot read the answer: {e}"))?;
            if n == 0 {
                return Err("the connection closed before a status line".into());
            }
            let new = len..len + n;
            len += n;
            if memchr::memchr(b'\n', &answer[new]).is_some() {
                return parse_status_line(&answer[..len]);
            }
        }
        Err(format!("no status line in the first {STATUS_LINE_MAX} bytes"))
    }
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &text[prefix.len()..])
}

/// `host[:port]`, the host a bracketed IPv6 literal or anything without a
/// colon.
fn split_host_port(authority: &str) -> Result<(&str, Option<&str>), String> {
    if authority.is_empty() {
        return Err("no host: write e.g. http://127.0.0.1:8080/".into());
    }
    if authority.starts_with('[') {
        let Some(close) = authority.find(']') else {
            return Err("an IPv6 address needs its closing `]`".into());
        };
        let (host, rest) = authority.split_at(close + 1);
        return match rest {
            "" => Ok((host, None)),
            _ => match rest.strip_prefix(':') {
                Some(port) => Ok((host, Some(port))),
                None => Err(format!("unexpected {rest:?} after the IPv6 address")),
            },
        };
    }
    match authority.split_once(':') {
        Some((host, port)) => Ok((host, Some(port))),
        None => Ok((authority, None)),
    }
}

/// Loopback is always allowed; any other address must be one of this
/// container's own (no traffic leaves it), and an address that names no
/// one host (0.0.0.0, a broadcast or multicast address) is refused.
fn check_local(ip: IpAddr, is_local: &dyn Fn(IpAddr) -> bool) -> Result<(), String> {
    if ip.is_loopback() {
        return Ok(());
    }
    if ip.is_unspecified() {
        return Err(format!(
            "{ip} is no host's address: write 127.0.0.1 (a server on {ip} answers there)"
        ));
    }
    if ip.is_multicast() || ip == IpAddr::V4(Ipv4Addr::BROADCAST) {
        return Err(format!("{ip} is a multicast or broadcast address"));
    }
    if !is_local(ip) {
        return Err(format!(
            "{ip} is not an address of this container: a probe goes to loopback (127.0.0.1) or the container's own addresses"
        ));
    }
    Ok(())
}

/// True when `ip` is an address of this network namespace: only a local
/// address can be bound (EADDRNOTAVAIL otherwise). A UDP socket sends
/// nothing and is closed at once.
pub fn binds_locally(ip: IpAddr) -> bool {
    std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

/// The status code of `HTTP/1.x NNN reason`, given the bytes up to (at
/// least) the end of that line.
pub fn parse_status_line(bytes: &[u8]) -> Result<u16, String> {
    let line = match memchr::memchr(b'\n', bytes) {
        Some(end) => bytes.get(..end).unwrap_or_default(),
        None => bytes,
    };
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let shown = || String::from_utf8_lossy(line).chars().take(80).collect::<String>();
    let rest = line
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| line.strip_prefix(b"HTTP/1.0 "))
        .ok_or_else(|| format!("not an HTTP/1 status line: {:?}", shown()))?;
    let code = rest.get(..3).filter(|_| rest.get(3).is_none_or(|b| *b == b' '));
    match code
        .and_then(|c| std::str::from_utf8(c).ok())
        .and_then(|c| c.parse::<u16>().ok())
    {
        Some(code) if (100..=999).contains(&code) => Ok(code),
        _ => Err(format!("no status code in {:?}", shown())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none(_: IpAddr) -> bool {
        false
    }

    #[test]
    fn urls_that_are_taken() {
        let ok = [
            (
                "http://127.0.0.1:8080/healthz",
                "127.0.0.1:8080",
                "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n",
            ),
            (
                "http://localhost/",
                "127.0.0.1:80",
                "GET / HTTP/1.1\r\nHost: localhost\r\n",
            ),
            (
                "HTTP://LOCALHOST:81",
                "127.0.0.1:81",
                "GET / HTTP/1.1\r\nHost: LOCALHOST:81\r\n",
            ),
            (
                "http://[::1]:9000/a/b?x=1&y=%20#frag",
                "[::1]:9000",
                "GET /a/b?x=1&y=%20 HTTP/1.1\r\nHost: [::1]:9000\r\n",
            ),
            (
                "http://127.9.8.7",
                "127.9.8.7:80",
                "GET / HTTP/1.1\r\nHost: 127.9.8.7\r\n",
            ),
            ("http://127.0.0.1:5000?q", "127.0.0.1:5000", "GET /?q HTTP/1.1\r\n"),
        ];
        for (url, addr, head) in ok {
            let parsed = HttpUrl::parse(url, &none).unwrap();
            assert_eq!(parsed.addr().to_string(), addr, "{url}");
            let request = String::from_utf8(parsed.0.request.clone()).unwrap();
            assert!(request.starts_with(head), "{url}: {request:?}");
            assert!(request.ends_with("User-Agent: baseinit\r\nAccept: */*\r\nConnection: close\r\n\r\n"));
        }
    }

    #[test]
    fn urls_that_are_refused_say_why_and_where() {
        let bad = [
            ("https://127.0.0.1/", 0, "https is not supported"),
            ("ftp://127.0.0.1/", 0, "write an http:// URL"),
            ("127.0.0.1:80", 0, "write an http:// URL"),
            ("http://", 7, "no host"),
            ("http:///x", 7, "no host"),
            (
                "http://example.com/",
                7,
                "host \"example.com\": write an IP address or `localhost`",
            ),
            ("http://db:5432/", 7, "host \"db\""),
            ("http://user@127.0.0.1/", 7, "a user or password"),
            ("http://127.0.0.1:0/", 17, "port \"0\""),
            ("http://127.0.0.1:99999/", 17, "port \"99999\""),
            ("http://127.0.0.1:/", 17, "port \"\""),
            ("http://[::1/", 7, "closing `]`"),
            ("http://[::1]x/", 7, "unexpected \"x\""),
            ("http://[fe80::1%25eth0]/", 7, "write an IP address"),
            ("http://0.0.0.0:80/", 7, "0.0.0.0 is no host's address"),
            ("http://[::]:80/", 7, ":: is no host's address"),
            ("http://224.0.0.1/", 7, "multicast"),
            ("http://255.255.255.255/", 7, "broadcast"),
            ("http://10.1.2.3:80/", 7, "10.1.2.3 is not an address of this container"),
            ("http://8.8.8.8/", 7, "not an address of this container"),
            ("http://127.0.0.1:80/a b", 21, "percent-encode"),
            ("http://127.0.0.1/é", 17, "percent-encode"),
            ("http://127.0.0.1/\r\nX: y", 17, "percent-encode"),
        ];
        for (url, offset, message) in bad {
            let e = HttpUrl::parse(url, &none).expect_err(url);
            assert!(e.message.contains(message), "{url}: {e:?}");
            assert_eq!(e.offset, offset, "{url}: {e:?}");
        }
    }

    proptest::proptest! {
        /// Any text is a URL or a refusal whose offset is inside it.
        #[test]
        fn any_url_parses_or_is_refused_within_it(
            url in proptest::prop_oneof!["http://[0-9a-z.:\\[\\]@/?#% ]{0,30}", ".{0,40}"],
        ) {
            if let Err(e) = HttpUrl::parse(&url, &none) {
                proptest::prop_assert!(e.offset <= url.len(), "{url:?}: {e:?}");
                proptest::prop_assert!(!e.message.is_empty());
            }
        }
    }

    #[test]
    fn a_non_loopback_address_must_be_the_containers_own() {
        let own = |ip: IpAddr| ip == IpAddr::V4(Ipv4Addr::new(172, 17, 0, 2));
        assert!(HttpUrl::parse("http://172.17.0.2:8080/", &own).is_ok());
        assert!(HttpUrl::parse("http://172.17.0.3:8080/", &own).is_err());
        // Loopback never asks.
        let never = |_: IpAddr| -> bool { panic!("asked about loopback") };
        assert!(HttpUrl::parse("http://127.0.0.1/", &never).is_ok());
        assert!(HttpUrl::parse("http://[::1]/", &never).is_ok());
    }

    #[test]
    fn only_a_local_address_binds() {
        assert!(binds_locally(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        // TEST-NET-3 (RFC 5737): documentation only, never any host's. The
        // bind fails without a packet sent.
        assert!(!binds_locally(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7))));
    }

    #[test]
    fn status_lines() {
        let table: [(&[u8], Result<u16, &str>); 14] = [
            (b"HTTP/1.1 200 OK\r\n", Ok(200)),
            (b"HTTP/1.0 204 No Content\r\nServer: x\r\n", Ok(204)),
            (b"HTTP/1.1 503 Service Unavailable\n", Ok(503)),
            (b"HTTP/1.1 301 Moved\r\nLocation: /\r\n", Ok(301)),
            (b"HTTP/1.1 200\r\n", Ok(200)),
            (b"HTTP/1.1 299 whatever\r\n", Ok(299)),
            (b"HTTP/1.1 2000 OK\r\n", Err("no status code")),
            (b"HTTP/1.1 20 OK\r\n", Err("no status code")),
            (b"HTTP/1.1 abc OK\r\n", Err("no status code")),
            (b"HTTP/1.1 099 OK\r\n", Err("no status code")),
            (b"HTTP/2 200\r\n", Err("not an HTTP/1 status line")),
            (b"SSH-2.0-OpenSSH_9.2\r\n", Err("not an HTTP/1 status line")),
            (b"", Err("not an HTTP/1 status line")),
            (b"\xff\xfe\r\n", Err("not an HTTP/1 status line")),
        ];
        for (bytes, want) in table {
            let got = parse_status_line(bytes);
            match want {
                Ok(code) => assert_eq!(got, Ok(code), "{bytes:?}"),
                Err(text) => assert!(got.as_ref().is_err_and(|e| e.contains(text)), "{bytes:?}: {got:?}"),
            }
        }
    }

    /// A one-shot server on a free loopback port: answers `reply` to the
    /// first connection after reading the request, which it returns.
    fn serve_once(reply: &'static [u8]) -> (HttpUrl, std::thread::JoinHandle<Vec<u8>>) {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let url = HttpUrl::parse(&format!("http://127.0.0.1:{port}/healthz"), &none).unwrap();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 512];
            while !request.ends_with(b"\r\n\r\n") {
                let n = conn.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
            }
            // In pieces: the status line split across reads.
            for piece in reply.chunks(if reply.len() < 200 { 5 } else { 1000 }) {
                let _ = conn.write_all(piece);
                let _ = conn.flush();
                std::thread::sleep(Duration::from_millis(2));
            }
            request
        });
        (url, server)
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn a_get_reads_the_status_line_only() {
        let (url, server) = serve_once(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 100000\r\n\r\n");
        assert_eq!(runtime().block_on(url.get(Duration::from_secs(5))), Ok(503));
        let request = String::from_utf8(server.join().unwrap()).unwrap();
        assert!(
            request.starts_with("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:"),
            "{request}"
        );
        assert!(request.contains("\r\nConnection: close\r\n"), "{request}");
        assert!(request.contains("\r\nUser-Agent: baseinit\r\n"), "{request}");
        let (url, _server) = serve_once(b"HTTP/1.0 200 OK\r\n\r\nhello");
        assert!(runtime().block_on(url.answers_2xx(Duration::from_secs(5))));
        let (url, _server) = serve_once(b"HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\n\r\n");
        assert!(
            !runtime().block_on(url.answers_2xx(Duration::from_secs(5))),
            "no redirect followed"
        );
    }

    #[test]
    fn a_server_that_says_nothing_times_out_and_a_closed_port_fails() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let url = HttpUrl::parse(&format!("http://127.0.0.1:{port}/"), &none).unwrap();
        // The kernel accepts the connection (backlog); nobody ever answers.
        let got = runtime().block_on(url.get(Duration::from_millis(100)));
        assert_eq!(got, Err("no answer within 100 ms".to_owned()));
        drop(listener);
        let got = runtime().block_on(url.get(Duration::from_secs(5)));
        assert!(got.as_ref().is_err_and(|e| e.starts_with("cannot connect")), "{got:?}");
    }

    #[test]
    fn an_endless_status_line_is_cut_off() {
        static LONG: [u8; 4096] = [b'x'; 4096];
        let (url, _server) = serve_once(&LONG);
        let got = runtime().block_on(url.get(Duration::from_secs(5)));
        assert!(got.as_ref().is_err_and(|e| e.contains("first 1024 bytes")), "{got:?}");
    }
}
