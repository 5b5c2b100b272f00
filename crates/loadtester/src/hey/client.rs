//! The HTTP/1.1 client of the built-in hey: one connection per worker (reused unless keep-alive is
//! disabled), optional TLS (certificates are not verified, as in hey) and HTTP proxies.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{HeaderMap, Method, Request, Uri};
use hyper_util::rt::TokioIo;
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
    /// Request target sent on the wire: origin-form, or absolute-form through a plain proxy.
    pub request_uri: Uri,
    pub method: Method,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub keepalive: bool,
    pub proxy: Option<Proxy>,
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// An HTTP proxy.
#[derive(Debug, Clone)]
pub struct Proxy {
    pub host: String,
    pub port: u16,
    /// `Proxy-Authorization` value.
    pub auth: Option<String>,
}

fn clock_ns() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// A stream that remembers when it last wrote, to split "req write" from "resp wait".
struct Timed {
    inner: Stream,
    last_write: Arc<AtomicU64>,
}

impl AsyncRead for Timed {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match &mut self.inner {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Timed {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = match &mut self.inner {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        };
        if matches!(r, Poll::Ready(Ok(_))) {
            self.last_write.store(clock_ns(), Ordering::Relaxed);
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = match &mut self.inner {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        };
        if matches!(r, Poll::Ready(Ok(_))) {
            self.last_write.store(clock_ns(), Ordering::Relaxed);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        match &self.inner {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.inner {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.inner {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// An open connection.
pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
    last_write: Arc<AtomicU64>,
}

/// Connection timings.
#[derive(Debug, Clone, Copy, Default)]
struct Dial {
    dns_ns: u64,
    conn_ns: u64,
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

impl Target {
    /// Go's error prefix: `Get "http://host/path"`.
    pub fn op(&self) -> String {
        let m = self.method.as_str();
        let mut chars = m.chars();
        let op = match chars.next() {
            Some(c) => c.to_uppercase().collect::<String>() + &chars.as_str().to_lowercase(),
            None => String::new(),
        };
        format!("{op} {:?}", self.url)
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
            return Err(last_err.unwrap_or_else(|| format!("dial tcp: lookup {host}: no such host")));
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
        let last_write = Arc::new(AtomicU64::new(0));
        let io = TokioIo::new(Timed { inner: stream, last_write: last_write.clone() });
        let (sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let conn_ns = start.elapsed().as_nanos() as u64;
        Ok((Conn { sender, last_write }, Dial { dns_ns, conn_ns }))
    }

    /// `CONNECT` tunnel through the proxy for https targets.
    async fn tunnel(&self, tcp: &mut TcpStream, proxy: &Proxy) -> Result<(), String> {
        let mut req = format!("CONNECT {0} HTTP/1.1\r\nHost: {0}\r\n", self.authority);
        if let Some(auth) = &proxy.auth {
            req.push_str(&format!("Proxy-Authorization: {auth}\r\n"));
        }
        req.push_str("\r\n");
        tcp.write_all(req.as_bytes()).await.map_err(|e| format!("proxyconnect tcp: {}", io_text(&e)))?;
        let mut buf = Vec::with_capacity(512);
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            if buf.len() > 16 * 1024 {
                return Err("proxyconnect tcp: response header too long".into());
            }
            let n = tcp.read(&mut byte).await.map_err(|e| format!("proxyconnect tcp: {}", io_text(&e)))?;
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

    fn request(&self) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(self.body.clone()));
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.request_uri.clone();
        *req.headers_mut() = self.headers.clone();
        req
    }

    /// Sends one request over `conn` (opening one if needed) and reads the whole response.
    /// `run_start_ns` is the clock reading at the start of the run (for CSV offsets).
    pub async fn send(&self, conn: &mut Option<Conn>, run_start: Instant) -> Result<Sample, String> {
        let start = Instant::now();
        let start_ns = clock_ns();
        let mut dial = Dial::default();
        let mut reused = false;
        if let Some(c) = conn.as_mut() {
            if c.sender.is_closed() || c.sender.ready().await.is_err() {
                *conn = None;
            } else {
                reused = true;
            }
        }
        if conn.is_none() {
            let (c, d) = self.dial().await?;
            *conn = Some(c);
            dial = d;
        }
        let mut req = self.request();
        let response = loop {
            let Some(c) = conn.as_mut() else {
                return Err("no connection".into());
            };
            let sent_ns = clock_ns();
            match c.sender.try_send_request(req).await {
                Ok(r) => break (r, sent_ns, c.last_write.clone()),
                Err(mut e) => {
                    // A kept-alive connection the server closed: retry once on a fresh one, as
                    // Go's transport does, when the request was not sent.
                    let unsent = e.take_message();
                    *conn = None;
                    match (reused, unsent) {
                        (true, Some(r)) => {
                            reused = false;
                            req = r;
                            let (c, d) = self.dial().await?;
                            *conn = Some(c);
                            dial = d;
                        }
                        _ => return Err(e.into_error().to_string()),
                    }
                }
            }
        };
        let (resp, sent_ns, last_write) = response;
        let headers_ns = clock_ns();
        let status = resp.status().as_u16();
        let mut body = resp.into_body();
        let mut bytes = 0u64;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => {
                    if let Some(d) = f.data_ref() {
                        bytes += d.len() as u64;
                    }
                }
                Err(e) => {
                    *conn = None;
                    return Err(e.to_string());
                }
            }
        }
        let done_ns = clock_ns();
        if !self.keepalive {
            *conn = None;
        }
        let wrote = last_write.load(Ordering::Relaxed).clamp(sent_ns, headers_ns);
        Ok(Sample {
            total_ns: done_ns - start_ns,
            conn_ns: dial.conn_ns,
            dns_ns: dial.dns_ns,
            write_ns: wrote - sent_ns,
            wait_ns: headers_ns - wrote,
            read_ns: done_ns - headers_ns,
            status,
            offset_ns: start.duration_since(run_start).as_nanos() as u64,
            bytes,
        })
    }
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
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
