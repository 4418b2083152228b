//! The server over TLS (rustls) with a generated certificate.
//!
//! A real server on a loopback port (`airlock_server::start`), a
//! self-signed certificate for `localhost` made with rcgen, and a
//! tokio-rustls client speaking raw HTTP/1.1: the health route answers over
//! TLS; plain HTTP, an untrusting client and a silent client get nothing
//! and hold up nobody; a bad certificate or key stops the server from
//! starting with an error that names the file and the problem.

use airlock_server::{Running, ServerConfig, StartError};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};

/// A certificate for `localhost` and 127.0.0.1 and its key, as PEM files.
struct Pki {
    cert: PathBuf,
    key: PathBuf,
    der: CertificateDer<'static>,
}

fn generate(dir: &Path, name: &str) -> Pki {
    let made =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    Pki {
        cert,
        key,
        der: made.cert.der().clone(),
    }
}

fn config(dir: &Path, tls: Option<(PathBuf, PathBuf)>) -> ServerConfig {
    let mut c = ServerConfig::new(
        dir.join("data"),
        airlock_runtime::sandbox::SandboxConfig {
            cache_dir: Some(airlock_tests::cache_dir()),
            ..Default::default()
        },
        airlock_gate::data::DataCaps::default(),
    );
    c.listen = "127.0.0.1:0".parse().unwrap();
    c.tls = tls;
    c
}

async fn start_tls(dir: &Path, pki: &Pki) -> Running {
    let running = airlock_server::start(config(dir, Some((pki.cert.clone(), pki.key.clone()))))
        .await
        .expect("server starts with TLS");
    assert_eq!(running.scheme(), "https");
    running
}

/// A client that trusts exactly `trusted`.
fn connector(trusted: &CertificateDer<'static>) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trusted.clone()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsConnector::from(Arc::new(config))
}

/// Reads until the peer closes (a read error after some bytes, such as a
/// TCP reset or a missing close_notify, also ends it), bounded in time.
async fn read_all(stream: &mut (impl AsyncReadExt + Unpin)) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return got,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "the server neither answered nor closed within 15 s (got {} bytes)",
                got.len()
            ),
        }
    }
}

const HEALTH: &[u8] = b"GET /v1/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";

/// `GET /v1/health` over TLS: the status code and the JSON body.
async fn health_over_tls(addr: SocketAddr, trusted: &CertificateDer<'static>) -> (u16, Value) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = connector(trusted)
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    {
        let (_, session) = tls.get_ref();
        assert_eq!(session.alpn_protocol(), Some(&b"http/1.1"[..]));
        assert!(matches!(
            session.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_3 | rustls::ProtocolVersion::TLSv1_2)
        ));
    }
    tls.write_all(HEALTH).await.unwrap();
    tls.flush().await.unwrap();
    let raw = read_all(&mut tls).await;
    let text = String::from_utf8(raw).expect("an HTTP answer is text");
    let (head, body) = text.split_once("\r\n\r\n").expect("headers end");
    let status: u16 = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP/1.1 status line: {head}"));
    let body: Value = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("health body is not JSON ({e}): {body}"));
    (status, body)
}

fn assert_healthy((status, body): (u16, Value)) {
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok", "{body}");
    assert!(body["gate_runs_running"].is_u64(), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn health_answers_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = generate(dir.path(), "server");
    let server = start_tls(dir.path(), &pki).await;
    assert_healthy(health_over_tls(server.addr, &pki.der).await);
    // Connections are independent: a second one works the same.
    assert_healthy(health_over_tls(server.addr, &pki.der).await);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_http_to_the_tls_port_gets_no_http_answer_and_serving_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let pki = generate(dir.path(), "server");
    let server = start_tls(dir.path(), &pki).await;

    let mut plain = TcpStream::connect(server.addr).await.unwrap();
    plain.write_all(HEALTH).await.unwrap();
    let answer = read_all(&mut plain).await;
    assert!(
        !answer.starts_with(b"HTTP/"),
        "plain HTTP got an HTTP answer: {:?}",
        String::from_utf8_lossy(&answer)
    );
    assert!(
        !answer
            .windows(b"\"status\"".len())
            .any(|w| w == b"\"status\""),
        "the health body leaked over plain HTTP"
    );

    assert_healthy(health_over_tls(server.addr, &pki.der).await);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_does_not_trust_the_certificate_fails_the_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let pki = generate(dir.path(), "server");
    let other = generate(dir.path(), "other");
    let server = start_tls(dir.path(), &pki).await;

    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let err = match connector(&other.der).connect(name, tcp).await {
        Ok(_) => panic!("a client trusting another certificate completed the handshake"),
        Err(e) => e,
    };
    let message = err.to_string();
    assert!(
        message.contains("certificate") || message.contains("Certificate"),
        "the handshake failed for another reason: {message}"
    );

    // The server is unaffected.
    assert_healthy(health_over_tls(server.addr, &pki.der).await);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_client_does_not_hold_up_other_handshakes() {
    let dir = tempfile::tempdir().unwrap();
    let pki = generate(dir.path(), "server");
    let server = start_tls(dir.path(), &pki).await;

    // Connected, never sends a ClientHello: its handshake waits out the
    // server's handshake timeout (10 s) on its own task.
    let silent = TcpStream::connect(server.addr).await.unwrap();
    // Wait until the server has accepted it and its handshake is pending.
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.handshakes_in_progress() == 0 {
        assert!(
            Instant::now() < deadline,
            "the silent connection was never accepted"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_healthy(health_over_tls(server.addr, &pki.der).await);
    // Served while the silent client's handshake was still pending: the
    // accept loop did not wait on it.
    assert_eq!(
        server.handshakes_in_progress(),
        1,
        "the silent handshake ended before the other request was served"
    );
    drop(silent);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn without_tls_the_scheme_is_http() {
    let dir = tempfile::tempdir().unwrap();
    let server = airlock_server::start(config(dir.path(), None))
        .await
        .unwrap();
    assert_eq!(server.scheme(), "http");
    server.stop().await.unwrap();
}

/// Starting must fail with `StartError::Tls` whose message contains every
/// one of `needles`, before the data directory is created.
async fn assert_tls_start_error(dir: &Path, cert: &Path, key: &Path, needles: &[&str]) {
    let c = config(dir, Some((cert.to_path_buf(), key.to_path_buf())));
    let data = c.data_dir.clone();
    let err = match airlock_server::start(c).await {
        Ok(running) => {
            running.stop().await.unwrap();
            panic!("the server started with a bad TLS configuration");
        }
        Err(e) => e,
    };
    let StartError::Tls(message) = &err else {
        panic!("expected StartError::Tls, got {err:?}");
    };
    for needle in needles {
        assert!(
            message.contains(needle),
            "{message:?} does not mention {needle:?}"
        );
    }
    assert!(
        !data.exists(),
        "a TLS configuration error must stop the server before it opens the data directory"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_key_file_is_a_tls_start_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let pki = generate(dir.path(), "server");
    let missing = dir.path().join("nowhere.key");
    let missing_name = missing.display().to_string();
    assert_tls_start_error(
        dir.path(),
        &pki.cert,
        &missing,
        &["private key", &missing_name, "cannot read"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pem_without_a_certificate_is_a_tls_start_error() {
    let dir = tempfile::tempdir().unwrap();
    let pki = generate(dir.path(), "server");
    // The key file given as the certificate chain: valid PEM, no certificate.
    let key_name = pki.key.display().to_string();
    assert_tls_start_error(
        dir.path(),
        &pki.key,
        &pki.key,
        &["certificate chain", &key_name, "no certificate"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_without_a_private_key_is_a_tls_start_error() {
    let dir = tempfile::tempdir().unwrap();
    let pki = generate(dir.path(), "server");
    let cert_name = pki.cert.display().to_string();
    assert_tls_start_error(
        dir.path(),
        &pki.cert,
        &pki.cert,
        &["private key", &cert_name, "no private key"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_that_does_not_match_the_certificate_is_a_tls_start_error() {
    let dir = tempfile::tempdir().unwrap();
    let pki = generate(dir.path(), "server");
    let other = generate(dir.path(), "other");
    let key_name = other.key.display().to_string();
    let cert_name = pki.cert.display().to_string();
    assert_tls_start_error(
        dir.path(),
        &pki.cert,
        &other.key,
        &["does not match", &key_name, &cert_name],
    )
    .await;
}
