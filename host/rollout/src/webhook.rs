//! Signing alert payloads and spacing their retries.
//!
//! Alerts (a canary aborted, drift detected) go to webhooks that people
//! point at chat or paging systems; the receiver must be able to tell that a
//! payload came from this server and is fresh. The header follows the widely
//! used `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>` scheme:
//! the timestamp is signed with the body, so a captured payload cannot be
//! replayed outside the tolerance window. Several `v1=` entries may appear
//! (while a secret is being rotated); any one matching is enough.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Why a signature header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The header is not `t=<digits>,v1=<hex>[,v1=<hex>...]`.
    #[error("malformed signature header: {0}")]
    Malformed(String),
    /// The header has a timestamp but no `v1=` signature.
    #[error("signature header has no v1 signature")]
    NoSignature,
    /// The timestamp is older than the tolerance allows.
    #[error("signature is {age_s} s old, over the tolerance of {tolerance_s} s")]
    Expired {
        /// Seconds between the timestamp and now.
        age_s: u64,
        /// The allowed age.
        tolerance_s: u64,
    },
    /// The timestamp lies further in the future than the tolerance allows.
    #[error(
        "signature timestamp is {ahead_s} s in the future, over the tolerance of {tolerance_s} s"
    )]
    FromTheFuture {
        /// Seconds the timestamp is ahead of now.
        ahead_s: u64,
        /// The allowed skew.
        tolerance_s: u64,
    },
    /// No signature matches the body and secret.
    #[error("signature does not match the body")]
    Mismatch,
}

fn mac(secret: &[u8], timestamp: u64, body: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut m = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
    m.update(timestamp.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m
}

/// The signature header for `body` sent at `timestamp` (Unix seconds):
/// `t=<ts>,v1=<hex hmac-sha256(secret, ts + "." + body)>`.
pub fn sign(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let tag = mac(secret, timestamp, body).finalize().into_bytes();
    format!("t={timestamp},v1={}", hex::encode(tag))
}

/// Checks a header made by [`sign`]: well formed, timestamp within
/// `tolerance_s` of `now` either way, and a `v1` signature that matches,
/// compared in constant time (`hmac`'s `verify_slice`).
pub fn verify(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now: u64,
    tolerance_s: u64,
) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        let (k, v) = part
            .trim()
            .split_once('=')
            .ok_or_else(|| SignatureError::Malformed(format!("{part:?} is not key=value")))?;
        match k {
            "t" => {
                if timestamp.is_some() {
                    return Err(SignatureError::Malformed("two timestamps".into()));
                }
                if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(SignatureError::Malformed(format!(
                        "timestamp {v:?} is not a number of seconds"
                    )));
                }
                timestamp = Some(v.parse::<u64>().map_err(|_| {
                    SignatureError::Malformed(format!("timestamp {v:?} is too large"))
                })?);
            }
            "v1" => signatures.push(hex::decode(v).map_err(|_| {
                SignatureError::Malformed(format!("v1 signature {v:?} is not hex"))
            })?),
            // Other schemes (v0, future versions) are ignored, as receivers do.
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or_else(|| SignatureError::Malformed("no t= timestamp".into()))?;
    if signatures.is_empty() {
        return Err(SignatureError::NoSignature);
    }
    if timestamp > now {
        let ahead_s = timestamp - now;
        if ahead_s > tolerance_s {
            return Err(SignatureError::FromTheFuture {
                ahead_s,
                tolerance_s,
            });
        }
    } else if now - timestamp > tolerance_s {
        return Err(SignatureError::Expired {
            age_s: now - timestamp,
            tolerance_s,
        });
    }
    let m = mac(secret, timestamp, body);
    if signatures.iter().any(|s| m.clone().verify_slice(s).is_ok()) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// When to retry a failed webhook delivery: exponential backoff with jitter.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Backoff {
    /// The nominal wait after the first failure.
    pub first: Duration,
    /// How much the nominal wait grows per failure.
    pub factor: u32,
    /// The cap on the nominal wait.
    pub max_delay: Duration,
    /// Total deliveries tried, the first included; no retry after that many.
    pub max_attempts: u32,
}

impl Backoff {
    /// The wait before the next delivery once `attempt` deliveries have failed
    /// (`attempt` counts from 1), or `None` when `attempt >= max_attempts`.
    /// `attempt` 0 (nothing failed yet) waits nothing.
    ///
    /// The nominal wait is `d = min(first * factor^(attempt-1), max_delay)`;
    /// the returned wait is drawn uniformly in `[d/2, d]` from the caller's
    /// `random` ("equal jitter", AWS Architecture Blog, "Exponential Backoff
    /// and Jitter", 2015), so many alerts failing at once do not retry in step
    /// yet never retry sooner than half the nominal wait.
    pub fn delay(&self, attempt: u32, random: u64) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        if attempt == 0 {
            return Some(Duration::ZERO);
        }
        // Waits are capped at u64::MAX ns (584 years) so the jitter product fits in u128.
        let cap = self.max_delay.as_nanos().min(u128::from(u64::MAX));
        let mut d = self.first.as_nanos().min(cap);
        for _ in 1..attempt {
            d = d.saturating_mul(u128::from(self.factor)).min(cap);
        }
        let half = d / 2;
        let span = d - half; // d/2 rounded up, so [half, d] is covered
        let extra = (u128::from(random) * (span + 1)) >> 64;
        let nanos = half + extra;
        Some(Duration::from_nanos(
            u64::try_from(nanos).unwrap_or(u64::MAX),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Computed independently with Python's standard library:
    // python3 -c "import hmac,hashlib; print(hmac.new(b'whsec_test', b'1700000000.' + b'{\"alert\":\"canary aborted\"}', hashlib.sha256).hexdigest())"
    const VECTOR: &str = "3274c7348b191560d2a2c3818e126e4b5aea3e54bf3b12bf93f0ea3a15e882c2";
    const BODY: &[u8] = br#"{"alert":"canary aborted"}"#;

    #[test]
    fn sign_matches_an_independent_vector() {
        assert_eq!(
            sign(b"whsec_test", 1_700_000_000, BODY),
            format!("t=1700000000,v1={VECTOR}")
        );
    }

    #[test]
    fn verify_accepts_a_fresh_signature_and_a_rotated_one() {
        let h = sign(b"whsec_test", 1_700_000_000, BODY);
        assert_eq!(verify(b"whsec_test", &h, BODY, 1_700_000_100, 300), Ok(()));
        let two = format!("t=1700000000,v1={},v1={VECTOR}", "00".repeat(32));
        assert_eq!(verify(b"whsec_test", &two, BODY, 1_700_000_000, 0), Ok(()));
    }

    #[test]
    fn verify_refuses_tampering_wrong_secret_and_stale_headers() {
        let h = sign(b"whsec_test", 1_700_000_000, BODY);
        let now = 1_700_000_000;
        assert_eq!(
            verify(b"whsec_test", &h, b"{}", now, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"other", &h, BODY, now, 300),
            Err(SignatureError::Mismatch)
        );
        // Changing the timestamp breaks the signature even within tolerance.
        let moved = h.replace("t=1700000000", "t=1700000001");
        assert_eq!(
            verify(b"whsec_test", &moved, BODY, now, 300),
            Err(SignatureError::Mismatch)
        );
        let e = verify(b"whsec_test", &h, BODY, now + 301, 300).unwrap_err();
        assert_eq!(
            e.to_string(),
            "signature is 301 s old, over the tolerance of 300 s"
        );
        let e = verify(b"whsec_test", &h, BODY, now - 400, 300).unwrap_err();
        assert_eq!(
            e,
            SignatureError::FromTheFuture {
                ahead_s: 400,
                tolerance_s: 300
            }
        );
    }

    #[test]
    fn verify_names_malformed_headers() {
        let v = |h: &str| verify(b"s", h, BODY, 10, 300).unwrap_err().to_string();
        assert_eq!(v("v1=00"), "malformed signature header: no t= timestamp");
        assert_eq!(v("t=10"), "signature header has no v1 signature");
        assert_eq!(
            v("t=-5,v1=00"),
            "malformed signature header: timestamp \"-5\" is not a number of seconds"
        );
        assert_eq!(
            v("t=10,v1=zz"),
            "malformed signature header: v1 signature \"zz\" is not hex"
        );
        assert_eq!(
            v("garbage"),
            "malformed signature header: \"garbage\" is not key=value"
        );
        assert_eq!(
            v("t=1,t=2,v1=00"),
            "malformed signature header: two timestamps"
        );
    }

    fn backoff() -> Backoff {
        Backoff {
            first: Duration::from_secs(1),
            factor: 2,
            max_delay: Duration::from_secs(10),
            max_attempts: 6,
        }
    }

    #[test]
    fn backoff_grows_caps_and_stops() {
        let b = backoff();
        // random = u64::MAX gives the top of the range, 0 the bottom.
        let top: Vec<_> = (1..6).map(|a| b.delay(a, u64::MAX).unwrap()).collect();
        let secs: Vec<f64> = top.iter().map(Duration::as_secs_f64).collect();
        assert_eq!(secs, vec![1.0, 2.0, 4.0, 8.0, 10.0]);
        let bottom: Vec<f64> = (1..6)
            .map(|a| b.delay(a, 0).unwrap().as_secs_f64())
            .collect();
        assert_eq!(bottom, vec![0.5, 1.0, 2.0, 4.0, 5.0]);
        assert_eq!(b.delay(6, 0), None);
        assert_eq!(b.delay(u32::MAX, 0), None);
        assert_eq!(b.delay(0, 123), Some(Duration::ZERO));
    }

    #[test]
    fn backoff_jitter_stays_in_range_and_spreads() {
        let b = backoff();
        let mut seen = std::collections::BTreeSet::new();
        let mut r = 0x1234_5678_9abc_def0u64;
        for _ in 0..1000 {
            r = r.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let d = b.delay(3, r).unwrap();
            assert!(
                d >= Duration::from_secs(2) && d <= Duration::from_secs(4),
                "{d:?}"
            );
            seen.insert(d.as_millis() / 250);
        }
        // All eight quarter-second slices of [2 s, 4 s) are hit.
        assert_eq!(seen.len(), 8 + usize::from(seen.contains(&16)));
    }

    #[test]
    fn backoff_saturates_instead_of_overflowing() {
        let b = Backoff {
            first: Duration::from_secs(u64::MAX / 4),
            factor: u32::MAX,
            max_delay: Duration::MAX,
            max_attempts: 100,
        };
        assert_eq!(b.delay(99, u64::MAX), Some(Duration::from_nanos(u64::MAX)));
        assert_eq!(b.delay(99, 0), Some(Duration::from_nanos(u64::MAX / 2)));
    }
}
