//! The collector's listeners, gRPC and HTTP alike: TCP without Nagle (a response's last
//! small frame must not wait for the peer's delayed ACK), TLS when configured, with each
//! handshake on a task of its own so a slow or silent client cannot hold up the accept
//! loop, and the certificates read again when their files change (see
//! [`crate::reload`]). Each connection carries its [`Peer`]: the address and the verified
//! client certificate, which tonic hands to the services in a request's extensions and
//! axum through `ConnectInfo`.

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use rustls::pki_types::CertificateDer;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::mpsc,
    task::JoinHandle,
};
use tracing::{debug, warn};

use crate::{metrics::Metrics, reload::Reloading};

/// How long a client may take over its TLS handshake.
const HANDSHAKE_WITHIN: Duration = Duration::from_secs(10);
/// Connections accepted but not yet taken by the server.
const BACKLOG: usize = 1024;

/// Who is on the other end of a connection.
#[derive(Clone, Debug)]
pub struct Peer {
    /// Their address.
    pub addr: SocketAddr,
    /// Their client certificate, verified against the client CA (TLS only).
    pub cert: Option<CertificateDer<'static>>,
}

enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// One accepted connection.
pub struct Conn {
    io: Io,
    peer: Peer,
}

/// The server's TLS configuration, kept current.
pub type TlsConfig = Reloading<rustls::ServerConfig>;

/// Accepted connections, ready to serve.
pub struct Listener {
    ready: mpsc::Receiver<Conn>,
    local: SocketAddr,
    accept: JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl Listener {
    /// Accepts on `tcp`, with TLS when `tls` is given.
    pub fn start(tcp: TcpListener, tls: Option<Arc<TlsConfig>>, metrics: Arc<Metrics>) -> Self {
        let local = tcp.local_addr().expect("a bound listener has an address");
        let (tx, ready) = mpsc::channel(BACKLOG);
        let accept = tokio::spawn(accept_loop(tcp, tls, metrics, tx));
        Listener {
            ready,
            local,
            accept,
        }
    }

    /// The next connection; `None` once the accept loop has ended.
    pub async fn next(&mut self) -> Option<Conn> {
        self.ready.recv().await
    }

    /// The connections as a stream, for tonic.
    pub fn into_stream(self) -> impl tokio_stream::Stream<Item = io::Result<Conn>> {
        futures::stream::unfold(
            self,
            |mut l| async move { l.next().await.map(|c| (Ok(c), l)) },
        )
    }
}

async fn accept_loop(
    tcp: TcpListener,
    tls: Option<Arc<TlsConfig>>,
    metrics: Arc<Metrics>,
    ready: mpsc::Sender<Conn>,
) {
    loop {
        let (stream, addr) = match tcp.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors, most likely: wait for some to close.
                warn!(message = "Cannot accept a connection.", %error);
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if let Err(error) = stream.set_nodelay(true) {
            debug!(message = "Cannot turn Nagle off.", %error);
        }
        let Some(tls) = &tls else {
            let conn = Conn {
                io: Io::Plain(stream),
                peer: Peer { addr, cert: None },
            };
            if ready.send(conn).await.is_err() {
                return;
            }
            continue;
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.get());
        let (ready, metrics) = (ready.clone(), Arc::clone(&metrics));
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_WITHIN, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => {
                    let cert = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|certs| certs.first())
                        .map(|c| c.clone().into_owned());
                    let conn = Conn {
                        io: Io::Tls(Box::new(stream)),
                        peer: Peer { addr, cert },
                    };
                    let _ = ready.send(conn).await;
                }
                Ok(Err(error)) => {
                    debug!(message = "TLS handshake failed.", %addr, %error);
                    metrics.refuse("tls_handshake");
                }
                Err(_) => {
                    debug!(message = "TLS handshake timed out.", %addr);
                    metrics.refuse("tls_handshake");
                }
            }
        });
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = Peer;

    fn connect_info(&self) -> Peer {
        self.peer.clone()
    }
}

impl axum::serve::Listener for Listener {
    type Io = Conn;
    type Addr = Peer;

    async fn accept(&mut self) -> (Conn, Peer) {
        match self.next().await {
            Some(conn) => {
                let peer = conn.peer.clone();
                (conn, peer)
            }
            // The accept loop only ends when the listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Peer> {
        Ok(Peer {
            addr: self.local,
            cert: None,
        })
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, Listener>> for Peer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, Listener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// The peer of a gRPC request (set by [`Conn`]'s connect info).
pub fn peer_of<T>(request: &tonic::Request<T>) -> Option<&Peer> {
    request.extensions().get::<Peer>()
}
