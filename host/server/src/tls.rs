//! TLS termination in the server itself, so a deployment off loopback needs
//! no proxy in front of it to keep tokens and artifacts off the wire in
//! clear.
//!
//! rustls with the ring provider, TLS 1.2 and 1.3 only (rustls' safe
//! defaults), ALPN `http/1.1` (the server speaks HTTP/1.1 only). The
//! certificate chain and key are read once at start; a problem with either
//! is a [`StartError::Tls`] naming the file and what is wrong, before the
//! data directory is opened.
//!
//! [`TlsListener`] plugs into `axum::serve`: handshakes run on their own
//! tasks, each bounded by [`HANDSHAKE_TIMEOUT`] and at most
//! [`MAX_PENDING_HANDSHAKES`] at once, so a client that connects and stays
//! silent delays nobody else; a failed handshake is logged and the listener
//! keeps accepting.

use crate::state::StartError;
use axum::serve::Listener;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How long a client has to complete the TLS handshake after connecting:
/// long enough for a slow link, short enough that a silent client's socket
/// is soon closed.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes in progress at once. Beyond it the listener stops accepting
/// TCP connections (they wait in the kernel's backlog) until one finishes,
/// so a flood of silent clients costs bounded memory and tasks.
pub const MAX_PENDING_HANDSHAKES: usize = 256;

/// How long accepting pauses after an error that is not about one
/// connection (out of file descriptors, say), as axum's own listener does.
const ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Reads the certificate chain and private key (PEM) and builds the
/// acceptor the listener uses. Every failure names the file and the
/// problem: the file cannot be read, it holds no certificate, it holds no
/// private key or one rustls does not support, the key does not belong to
/// the first certificate.
pub fn acceptor(cert_path: &Path, key_path: &Path) -> Result<TlsAcceptor, StartError> {
    let chain = read_chain(cert_path)?;
    let key = read_key(key_path)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certified = certified_key(&provider, chain, key, cert_path, key_path)?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StartError::Tls(format!("protocol versions: {e}")))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn read_file(what: &str, path: &Path) -> Result<Vec<u8>, StartError> {
    std::fs::read(path)
        .map_err(|e| StartError::Tls(format!("{what} {}: cannot read: {e}", path.display())))
}

/// Every `CERTIFICATE` block, in order (the server's own certificate
/// first, then its intermediates).
fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, StartError> {
    let what = "certificate chain";
    let bytes = read_file(what, path)?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| StartError::Tls(format!("{what} {}: malformed PEM: {e}", path.display())))?;
    if chain.is_empty() {
        return Err(StartError::Tls(format!(
            "{what} {}: no certificate in the file (expected a PEM `CERTIFICATE` block)",
            path.display()
        )));
    }
    Ok(chain)
}

/// The first private key block (PKCS#8, PKCS#1 RSA or SEC1 EC); other
/// blocks in the file are skipped.
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, StartError> {
    let what = "private key";
    let bytes = read_file(what, path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
        let problem = match e {
            pem::Error::NoItemsFound => "no private key in the file (expected a PEM \
                 `PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY` block)"
                .to_string(),
            other => format!("malformed PEM: {other}"),
        };
        StartError::Tls(format!("{what} {}: {problem}", path.display()))
    })
}

/// Loads the key with the provider and checks it belongs to the first
/// certificate, so a mismatch is a start error rather than every client's
/// handshake failing.
fn certified_key(
    provider: &CryptoProvider,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    cert_path: &Path,
    key_path: &Path,
) -> Result<CertifiedKey, StartError> {
    let signing = provider.key_provider.load_private_key(key).map_err(|e| {
        StartError::Tls(format!(
            "private key {}: unsupported key: {e}",
            key_path.display()
        ))
    })?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        // The key type cannot report its public key: rustls itself accepts
        // this, and the handshake would show a mismatch.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(certified)
        }
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(StartError::Tls(format!(
                "private key {} does not match the certificate in {}",
                key_path.display(),
                cert_path.display()
            )))
        }
        Err(e) => Err(StartError::Tls(format!(
            "certificate chain {}: the first certificate is unusable: {e}",
            cert_path.display()
        ))),
    }
}

/// A TCP listener that hands `axum::serve` only connections that completed
/// a TLS handshake. Handshakes run concurrently on their own tasks, so one
/// slow or silent client never holds up the others.
pub struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    handshakes: JoinSet<Result<(TlsStream<TcpStream>, SocketAddr), String>>,
    paused_until: Option<Instant>,
    /// Handshakes started and not yet finished (see [`TlsListener::pending`]).
    pending: Arc<AtomicUsize>,
}

/// Counts a handshake as pending until its task ends, however it ends.
struct Pending(Arc<AtomicUsize>);

impl Drop for Pending {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl TlsListener {
    /// Wraps a bound listener.
    pub fn new(tcp: TcpListener, acceptor: TlsAcceptor) -> TlsListener {
        TlsListener {
            tcp,
            acceptor,
            handshakes: JoinSet::new(),
            paused_until: None,
            pending: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The number of handshakes accepted and not yet finished, shared (so
    /// that tests can wait for a connection to be accepted instead of
    /// sleeping).
    pub fn pending(&self) -> Arc<AtomicUsize> {
        self.pending.clone()
    }

    fn start_handshake(&mut self, stream: TcpStream, peer: SocketAddr) {
        // Small requests and responses: do not let Nagle hold TLS records.
        let _ = stream.set_nodelay(true);
        let acceptor = self.acceptor.clone();
        self.pending.fetch_add(1, Ordering::AcqRel);
        let pending = Pending(self.pending.clone());
        self.handshakes.spawn(async move {
            let _pending = pending;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => Ok((tls, peer)),
                Ok(Err(e)) => Err(format!("TLS handshake with {peer} failed: {e}")),
                Err(_) => Err(format!(
                    "TLS handshake with {peer} timed out after {}s",
                    HANDSHAKE_TIMEOUT.as_secs()
                )),
            }
        });
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    /// Accepts TCP connections and starts their handshakes until one
    /// handshake completes. Never fails: failed handshakes and accept
    /// errors are logged to stderr. Cancel-safe (axum drops it on
    /// shutdown): both awaited operations are, and pending handshakes stay
    /// in the set.
    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let full = self.handshakes.len() >= MAX_PENDING_HANDSHAKES;
            if self.paused_until.is_some_and(|t| t <= Instant::now()) {
                self.paused_until = None;
            }
            let paused = self.paused_until;
            let resume = paused.unwrap_or_else(Instant::now);
            tokio::select! {
                accepted = self.tcp.accept(), if !full && paused.is_none() => match accepted {
                    Ok((stream, peer)) => self.start_handshake(stream, peer),
                    Err(e) if is_connection_error(&e) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "accepting a connection: {e}");
                        self.paused_until = Some(Instant::now() + ACCEPT_BACKOFF);
                    }
                },
                Some(done) = self.handshakes.join_next(), if !self.handshakes.is_empty() => {
                    match done {
                        Ok(Ok(conn)) => return conn,
                        Ok(Err(message)) => tracing::warn!("{message}"),
                        Err(e) => tracing::error!(error = %e, "TLS handshake task: {e}"),
                    }
                }
                () = tokio::time::sleep_until(resume), if paused.is_some() => {}
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// Errors about one connection only (the peer went away before it was
/// accepted): accepting simply goes on.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}
