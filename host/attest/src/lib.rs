//! airlock's signing and verification layer.
//!
//! A deployment gate's verdict is only worth something if anyone can check,
//! offline and later, that *this* verdict was reached about *these* exact
//! artifacts by a host they trust; and a model is only worth serving if it
//! is the one its producer signed. This crate holds the formats and the
//! cryptography for both, and nothing else (no I/O beyond reading a model
//! directory, no wasmtime, no HTTP):
//!
//! * [`keys`]: ECDSA P-256/P-384 keys in PEM, key ids, key sets for rotation;
//! * [`dsse`]: DSSE envelopes (PAE, sign, verify);
//! * [`intoto`]: in-toto Statement v1;
//! * [`model_signing`]: the OpenSSF model signing format v1.0, interoperable
//!   both ways with the reference `model_signing` 1.1.1;
//! * [`gate`]: signed gate attestations over a [`VerdictRecord`] and their
//!   verification;
//! * [`signed`]: any JSON document signed as a DSSE envelope of its own
//!   payload type, verified back with its signer's key id;
//! * [`policy`]: the trust policy (which keys may sign plugins, bundles,
//!   gates and policies; what must be signed), its rollback-proof update
//!   rule, and signed gate definitions.
//!
//! `docs/signing.md` describes the formats and what each verification
//! checks.
//!
//! [`VerdictRecord`]: airlock_core::gate::report::VerdictRecord
#![forbid(unsafe_code)]

pub mod dsse;
pub mod gate;
pub mod intoto;
pub mod keys;
pub mod model_signing;
pub mod policy;
pub mod signed;

pub use dsse::Envelope;
pub use keys::{Curve, KeyId, KeySet, SigningKey, VerifyingKey};
