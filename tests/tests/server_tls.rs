//! The server over TLS (rustls) with a generated certificate.
