//! The HTTP/1.1 client of the built-in hey. Each worker owns one connection (reused unless
//! keep-alive is disabled) and sends the same pre-serialised request on it again and again, then
//! parses the response with `httparse` (Content-Length, chunked, or read-to-close bodies; 1xx
//! responses skipped). TLS uses rustls without certificate verification, as hey does; HTTP
//! proxies get absolute-form requests, or a CONNECT tunnel for https.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use hyper::HeaderMap;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use super::report::Sample;

/// Where requests go and how.
#[derive(Debug)]
pub struct Target {
    pub url: String,
    pub https: bool,
    pub host: String,
    pub port: u16,
    /// `host[:port]` for the Host header and CONNECT.
    pub authority: String,
    /// The method, for error messages and to know that HEAD responses have no body.
    pub method: String,
    /// The whole request (head and body) as sent on the wire.
    pub request: Bytes,
    /// Whether the request may be sent again after a failure on a reused connection (Go:
    /// GET, HEAD, OPTIONS and TRACE).
    pub replayable: bool,
    pub keepalive: bool,
    pub proxy: Option<Proxy>,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// The headers as given, without Host and Proxy-Authorization (kept to build redirects).
    pub headers: HeaderMap,
    /// `-host`: the Host header to send instead of the URL's authority.
    pub host_override: Option<String>,
    /// The request body (kept to build redirects).
    pub body: Bytes,
    /// Follow redirects with the rules of Go's `http.Client` (hey's default).
    pub follow_redirects: bool,
}

/// An HTTP proxy.
#[derive(Debug, Clone)]
pub struct Proxy {
    pub host: String,
    pub port: u16,
    /// `Proxy-Authorization` value.
    pub auth: Option<String>,
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// An open connection and its read buffer.
pub struct Conn {
    stream: Stream,
    buf: Vec<u8>,
    /// Start of the unread bytes in `buf`.
    pos: usize,
}

/// Connection timings.
#[derive(Debug, Clone, Copy, Default)]
struct Dial {
    dns_ns: u64,
    conn_ns: u64,
}

/// One response, as far as hey cares.
struct Exchanged {
    written: Instant,
    headers: Instant,
    status: u16,
    bytes: u64,
    keepalive: bool,
    /// The `Location` header of a 3xx response.
    location: Option<String>,
}

/// A failed exchange. `before_response` is set when nothing of the response was received, so
/// that, on a reused connection, the server most likely closed it while idle.
struct Failure {
    msg: String,
    before_response: bool,
}

impl Failure {
    fn before_response(msg: String) -> Self {
        Self {
            msg,
            before_response: true,
        }
    }

    fn after(msg: String) -> Self {
        Self {
            msg,
            before_response: false,
        }
    }
}

const READ_CHUNK: usize = 16 * 1024;
const MAX_HEAD: usize = 64 * 1024;

impl Conn {
    fn unread(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
    }

    /// Reads more bytes; `Ok(false)` on EOF.
    async fn fill(&mut self) -> io::Result<bool> {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > READ_CHUNK {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.reserve(READ_CHUNK);
        let n = self.stream.read_buf(&mut self.buf).await?;
        Ok(n > 0)
    }

    async fn exchange(&mut self, request: &[u8], head: bool) -> Result<Exchanged, Failure> {
        self.stream
            .write_all(request)
            .await
            .map_err(|e| Failure::before_response(format!("write: {}", io_text(&e))))?;
        if matches!(self.stream, Stream::Tls(_)) {
            self.stream
                .flush()
                .await
                .map_err(|e| Failure::before_response(format!("write: {}", io_text(&e))))?;
        }
        let written = Instant::now();
        // Response head, skipping 1xx interim responses.
        let (status, framing, keepalive, location, headers_at) = loop {
            let parsed = {
                let mut headers = [httparse::EMPTY_HEADER; 128];
                let mut resp = httparse::Response::new(&mut headers);
                match resp.parse(self.unread()) {
                    Ok(httparse::Status::Complete(n)) => {
                        let code = resp.code.unwrap_or(0);
                        let http10 = resp.version == Some(0);
                        let mut length = None;
                        let mut chunked = false;
                        let mut close = http10;
                        let mut location = None;
                        let redirect = (300..400).contains(&code);
                        for h in resp.headers.iter() {
                            if redirect && h.name.eq_ignore_ascii_case("location") {
                                location = Some(String::from_utf8_lossy(h.value).into_owned());
                            } else if h.name.eq_ignore_ascii_case("content-length") {
                                length = std::str::from_utf8(h.value)
                                    .ok()
                                    .and_then(|v| v.trim().parse::<u64>().ok());
                            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                                chunked = h
                                    .value
                                    .to_ascii_lowercase()
                                    .windows(7)
                                    .any(|w| w == b"chunked");
                            } else if h.name.eq_ignore_ascii_case("connection") {
                                let v = h.value.to_ascii_lowercase();
                                if v.windows(5).any(|w| w == b"close") {
                                    close = true;
                                } else if v.windows(10).any(|w| w == b"keep-alive") {
                                    close = false;
                                }
                            }
                        }
                        Some((n, code, length, chunked, close, location))
                    }
                    Ok(httparse::Status::Partial) => None,
                    Err(e) => return Err(Failure::after(format!("malformed HTTP response: {e}"))),
                }
            };
            match parsed {
                Some((n, code, length, chunked, close, location)) => {
                    self.consume(n);
                    if (100..200).contains(&code) && code != 101 {
                        continue;
                    }
                    let framing =
                        if head || code == 204 || code == 304 || (100..200).contains(&code) {
                            Framing::Length(0)
                        } else if chunked {
                            Framing::Chunked
                        } else if let Some(l) = length {
                            Framing::Length(l)
                        } else {
                            Framing::UntilClose
                        };
                    let keepalive = !close && !matches!(framing, Framing::UntilClose);
                    break (code, framing, keepalive, location, Instant::now());
                }
                None => {
                    if self.unread().len() > MAX_HEAD {
                        return Err(Failure::after(
                            "malformed HTTP response: header too long".into(),
                        ));
                    }
                    let had_bytes = !self.unread().is_empty();
                    match self.fill().await {
                        Ok(true) => {}
                        Ok(false) if had_bytes => {
                            return Err(Failure::after("unexpected EOF".into()));
                        }
                        Ok(false) => return Err(Failure::before_response("EOF".into())),
                        Err(e) if had_bytes => {
                            return Err(Failure::after(format!("read: {}", io_text(&e))));
                        }
                        Err(e) => {
                            return Err(Failure::before_response(format!("read: {}", io_text(&e))));
                        }
                    }
                }
            }
        };
        let bytes = self.read_body(framing).await.map_err(Failure::after)?;
        Ok(Exchanged {
            written,
            headers: headers_at,
            status,
            bytes,
            keepalive,
            location,
        })
    }

    async fn read_body(&mut self, framing: Framing) -> Result<u64, String> {
        let eof = || "unexpected EOF".to_string();
        let read_err = |e: io::Error| format!("read: {}", io_text(&e));
        match framing {
            Framing::Length(mut left) => {
                let total = left;
                while left > 0 {
                    if self.unread().is_empty() && !self.fill().await.map_err(read_err)? {
                        return Err(eof());
                    }
                    let take = (self.unread().len() as u64).min(left) as usize;
                    self.consume(take);
                    left -= take as u64;
                }
                Ok(total)
            }
            Framing::UntilClose => {
                let mut total = self.unread().len() as u64;
                self.consume(self.unread().len());
                while self.fill().await.map_err(read_err)? {
                    total += self.unread().len() as u64;
                    self.consume(self.unread().len());
                }
                Ok(total)
            }
            Framing::Chunked => {
                let mut total = 0u64;
                loop {
                    let size = loop {
                        match httparse::parse_chunk_size(self.unread()) {
                            Ok(httparse::Status::Complete((n, size))) => {
                                self.consume(n);
                                break size;
                            }
                            Ok(httparse::Status::Partial) => {
                                if !self.fill().await.map_err(read_err)? {
                                    return Err(eof());
                                }
                            }
                            Err(_) => return Err("malformed chunked encoding".into()),
                        }
                    };
                    if size == 0 {
                        // Trailers, up to the empty line.
                        loop {
                            if let Some(i) = self.unread().windows(2).position(|w| w == b"\r\n") {
                                self.consume(i + 2);
                                if i == 0 {
                                    return Ok(total);
                                }
                            } else if !self.fill().await.map_err(read_err)? {
                                return Err(eof());
                            }
                        }
                    }
                    let mut left = size + 2; // data and its CRLF
                    while left > 0 {
                        if self.unread().is_empty() && !self.fill().await.map_err(read_err)? {
                            return Err(eof());
                        }
                        let take = (self.unread().len() as u64).min(left) as usize;
                        self.consume(take);
                        left -= take as u64;
                    }
                    total += size;
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Framing {
    Length(u64),
    Chunked,
    UntilClose,
}

/// Go-like error text: `dial tcp 127.0.0.1:1: connect: connection refused`.
fn io_text(e: &io::Error) -> String {
    let s = e.to_string();
    let s = match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    };
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().collect::<String>() + chars.as_str(),
        None => s,
    }
}

/// Go's `url.Error` prefix: the method as `Get`, then the quoted URL.
fn go_op(method: &str, url: &str) -> String {
    let mut chars = method.chars();
    let op = match chars.next() {
        Some(c) => c.to_uppercase().collect::<String>() + &chars.as_str().to_lowercase(),
        None => String::new(),
    };
    format!("{op} {url:?}")
}

/// The statuses Go's client follows.
fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

/// At most this many requests per hey request (Go's default `CheckRedirect`).
const MAX_REQUESTS: usize = 10;

impl Target {
    /// Go's error prefix: `Get "http://host/path"`.
    pub fn op(&self) -> String {
        go_op(&self.method, &self.url)
    }

    /// Whether `other` goes to the same server, so that it may use this target's connection.
    fn same_origin(&self, other: &Target) -> bool {
        self.https == other.https && self.host == other.host && self.port == other.port
    }

    async fn dial(&self) -> Result<(Conn, Dial), String> {
        let start = Instant::now();
        let (host, port) = match &self.proxy {
            Some(p) => (p.host.as_str(), p.port),
            None => (self.host.as_str(), self.port),
        };
        let addrs: Vec<std::net::SocketAddr> = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => vec![std::net::SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((host, port))
                .await
                .map_err(|e| format!("dial tcp: lookup {host}: {}", io_text(&e)))?
                .collect(),
        };
        let dns_ns = start.elapsed().as_nanos() as u64;
        let mut last_err = None;
        let mut tcp = None;
        for addr in &addrs {
            match TcpStream::connect(addr).await {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last_err = Some(format!("dial tcp {addr}: connect: {}", io_text(&e))),
            }
        }
        let Some(mut tcp) = tcp else {
            return Err(
                last_err.unwrap_or_else(|| format!("dial tcp: lookup {host}: no such host"))
            );
        };
        let _ = tcp.set_nodelay(true);
        let stream = match &self.tls {
            None => Stream::Plain(tcp),
            Some(cfg) => {
                if let Some(p) = &self.proxy {
                    self.tunnel(&mut tcp, p).await?;
                }
                let name = ServerName::try_from(self.host.clone())
                    .map_err(|e| format!("tls: invalid server name {}: {e}", self.host))?;
                let tls = tokio_rustls::TlsConnector::from(cfg.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("tls: {}", io_text(&e)))?;
                Stream::Tls(Box::new(tls))
            }
        };
        let conn_ns = start.elapsed().as_nanos() as u64;
        Ok((
            Conn {
                stream,
                buf: Vec::with_capacity(READ_CHUNK),
                pos: 0,
            },
            Dial { dns_ns, conn_ns },
        ))
    }
    /// `CONNECT` tunnel through the proxy for https targets.
    async fn tunnel(&self, tcp: &mut TcpStream, proxy: &Proxy) -> Result<(), String> {
        let mut req = format!("CONNECT {0} HTTP/1.1\r\nHost: {0}\r\n", self.authority);
        if let Some(auth) = &proxy.auth {
            req.push_str(&format!("Proxy-Authorization: {auth}\r\n"));
        }
        req.push_str("\r\n");
        tcp.write_all(req.as_bytes())
            .await
            .map_err(|e| format!("proxyconnect tcp: {}", io_text(&e)))?;
        let mut buf = Vec::with_capacity(512);
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            if buf.len() > 16 * 1024 {
                return Err("proxyconnect tcp: response header too long".into());
            }
            let n = tcp
                .read(&mut byte)
                .await
                .map_err(|e| format!("proxyconnect tcp: {}", io_text(&e)))?;
            if n == 0 {
                return Err("proxyconnect tcp: unexpected EOF".into());
            }
            buf.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&buf);
        let status_line = head.lines().next().unwrap_or_default();
        let code = status_line.split_whitespace().nth(1).unwrap_or_default();
        if code != "200" {
            return Err(format!("proxyconnect tcp: {}", status_line.trim()));
        }
        Ok(())
    }

    /// Sends the request over `conn` (opening a connection if needed) and reads the whole
    /// response, following redirects as Go's `http.Client` does unless disabled. `run_start` is
    /// the start of the run (for CSV offsets). Errors are complete messages in Go's words
    /// (`Get "http://...": EOF`).
    pub async fn send(
        &self,
        conn: &mut Option<Conn>,
        run_start: Instant,
    ) -> Result<Sample, String> {
        let start = Instant::now();
        let mut hop = self
            .round_trip(conn, start)
            .await
            .map_err(|e| format!("{}: {e}", self.op()))?;
        if self.follow_redirects && is_redirect(hop.done.status) {
            // Hops to this target's server use the worker's connection; hops elsewhere use a
            // connection of their own, closed once the request is done.
            let mut elsewhere: Option<Conn> = None;
            let mut elsewhere_at: Option<(bool, String, u16)> = None;
            let mut current: Option<Target> = None;
            let mut strip_sensitive = false;
            let mut requests = 1;
            while is_redirect(hop.done.status) {
                let cur = current.as_ref().unwrap_or(self);
                let Some(location) = hop.done.location.take() else {
                    break;
                };
                if requests >= MAX_REQUESTS {
                    // Go reports the Location as received, not resolved.
                    return Err(format!(
                        "{}: stopped after {MAX_REQUESTS} redirects",
                        go_op(&self.method, &location)
                    ));
                }
                let next =
                    match cur.redirect(self, hop.done.status, &location, &mut strip_sensitive) {
                        Ok(Some(next)) => next,
                        Ok(None) => break,
                        Err(e) => return Err(format!("{}: {e}", go_op(&self.method, &cur.url))),
                    };
                let hop_conn = if next.same_origin(self) {
                    &mut *conn
                } else {
                    let origin = (next.https, next.host.clone(), next.port);
                    if elsewhere_at.as_ref() != Some(&origin) {
                        elsewhere = None;
                        elsewhere_at = Some(origin);
                    }
                    &mut elsewhere
                };
                hop = next
                    .round_trip(hop_conn, Instant::now())
                    .await
                    .map_err(|e| format!("{}: {e}", go_op(&self.method, &next.url)))?;
                requests += 1;
                current = Some(next);
            }
        }
        let finished = Instant::now();
        let Hop { dial, sent, done } = hop;
        let ns = |a: Instant, b: Instant| b.saturating_duration_since(a).as_nanos() as u64;
        Ok(Sample {
            total_ns: ns(start, finished),
            conn_ns: dial.conn_ns,
            dns_ns: dial.dns_ns,
            write_ns: ns(sent, done.written),
            wait_ns: ns(done.written, done.headers),
            read_ns: ns(done.headers, finished),
            status: done.status,
            offset_ns: ns(run_start, start),
            bytes: done.bytes,
        })
    }

    /// One request and its response on `conn` (dialled if needed). A replayable request that
    /// fails before any answer on a reused connection is sent once more on a new one, as Go's
    /// transport does.
    async fn round_trip(&self, conn: &mut Option<Conn>, start: Instant) -> Result<Hop, String> {
        let mut dial = Dial::default();
        let mut reused = conn.is_some();
        if !reused {
            let (c, d) = self.dial().await?;
            *conn = Some(c);
            dial = d;
        }
        let head = self.method == "HEAD";
        // On a reused connection the request is written right away: no second clock read.
        let mut written_at_start = reused;
        let (sent, done) = loop {
            let Some(c) = conn.as_mut() else {
                return Err("no connection".into());
            };
            let sent = if std::mem::take(&mut written_at_start) {
                start
            } else {
                Instant::now()
            };
            match c.exchange(&self.request, head).await {
                Ok(d) => break (sent, d),
                Err(f) => {
                    *conn = None;
                    // The server closed the kept-alive connection: like Go's transport, retry
                    // a replayable request once on a new connection.
                    if reused && f.before_response && self.replayable {
                        reused = false;
                        let (c, d) = self.dial().await?;
                        *conn = Some(c);
                        dial = d;
                        continue;
                    }
                    return Err(f.msg);
                }
            }
        };
        if !self.keepalive || !done.keepalive {
            *conn = None;
        }
        Ok(Hop { dial, sent, done })
    }
}

/// One request of a hey request (there are several when redirects are followed).
struct Hop {
    dial: Dial,
    sent: Instant,
    done: Exchanged,
}

/// A TLS configuration that, like hey, does not verify the server's certificate.
pub fn insecure_tls() -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
