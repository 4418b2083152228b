//! Which version answers a request.
//!
//! A [`Split`] sends `canary_percent` of traffic to the canary and the rest to
//! the stable version. Requests that carry a routing key (a user or session
//! id) are *sticky*: the key is hashed with the split's salt into one of
//! 10 000 buckets ([`bucket`]) and the bucket decides the side, so the same
//! key lands on the same version for as long as the split is unchanged, and
//! raising the percentage only moves keys from stable to canary (the canary
//! side is the prefix `bucket < percent * 100`, which only grows). Requests
//! without a key use a random number the caller draws per request. The shadow
//! version never answers: the server mirrors requests to it and compares.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How many buckets keys are hashed into: 0.01 % granularity.
pub const BUCKETS: u32 = 10_000;

/// Why a split cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoutingError {
    /// The canary share was over 100 %.
    #[error("canary percent {0} is over 100")]
    PercentOver100(u8),
    /// A canary share was given but no canary version.
    #[error("canary percent {0} given but there is no canary version")]
    PercentWithoutCanary(u8),
    /// A version name was empty.
    #[error("the {0} version name is empty")]
    EmptyVersion(&'static str),
    /// The canary or shadow is the stable version itself.
    #[error("the {role} version {version:?} is the stable version")]
    SameAsStable {
        /// "canary" or "shadow".
        role: &'static str,
        /// The repeated version.
        version: String,
    },
}

/// How traffic is divided between versions of one model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Split {
    /// The version that answers by default.
    pub stable: String,
    /// The version under test, when a canary is running.
    pub canary: Option<String>,
    /// Share of traffic (0..=100) the canary answers.
    pub canary_percent: u8,
    /// A version that receives a copy of requests but never answers.
    pub shadow: Option<String>,
    /// Salt mixed into key hashes. Defaults to the canary's version name, so
    /// each new candidate is tried on a fresh, independent set of keys while
    /// one candidate's keys stay put as its percentage rises.
    pub salt: String,
}

/// Why a request went to the version it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteReason {
    /// No canary was eligible: stable by default (or by the random draw).
    Stable,
    /// The random draw chose the canary.
    Canary,
    /// The routing key's bucket chose the side (either side).
    Sticky,
}

/// The version that answers one request, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route<'a> {
    /// The version name.
    pub version: &'a str,
    /// Why it was chosen.
    pub reason: RouteReason,
}

impl Split {
    /// Builds a checked split; the salt defaults to the canary's name (or the
    /// stable's when there is no canary), see [`Split::with_salt`].
    pub fn new(
        stable: &str,
        canary: Option<&str>,
        canary_percent: u8,
        shadow: Option<&str>,
    ) -> Result<Split, RoutingError> {
        if stable.is_empty() {
            return Err(RoutingError::EmptyVersion("stable"));
        }
        if canary_percent > 100 {
            return Err(RoutingError::PercentOver100(canary_percent));
        }
        for (role, v) in [("canary", canary), ("shadow", shadow)] {
            match v {
                Some("") => return Err(RoutingError::EmptyVersion(role)),
                Some(v) if v == stable => {
                    return Err(RoutingError::SameAsStable {
                        role,
                        version: v.to_string(),
                    });
                }
                _ => {}
            }
        }
        if canary.is_none() && canary_percent > 0 {
            return Err(RoutingError::PercentWithoutCanary(canary_percent));
        }
        Ok(Split {
            stable: stable.to_string(),
            canary: canary.map(str::to_string),
            canary_percent,
            shadow: shadow.map(str::to_string),
            salt: canary.unwrap_or(stable).to_string(),
        })
    }

    /// Replaces the key-hashing salt (e.g. to keep the same keys on the canary
    /// across a restart with a new candidate).
    pub fn with_salt(mut self, salt: &str) -> Split {
        self.salt = salt.to_string();
        self
    }

    /// Picks the version that answers a request.
    ///
    /// `key`: a sticky routing key (same key + same split salt => same side;
    /// raising `canary_percent` only moves keys from stable to canary, never
    /// back). `random`: a u64 the caller draws per request, used when there is
    /// no key. Without a canary every request goes to stable.
    pub fn route(&self, key: Option<&str>, random: u64) -> Route<'_> {
        let Some(canary) = self.canary.as_deref() else {
            return Route {
                version: &self.stable,
                reason: RouteReason::Stable,
            };
        };
        let cut = u32::from(self.canary_percent.min(100)) * (BUCKETS / 100);
        match key {
            Some(key) => Route {
                version: if bucket(&self.salt, key) < cut {
                    canary
                } else {
                    &self.stable
                },
                reason: RouteReason::Sticky,
            },
            None if random_bucket(random) < cut => Route {
                version: canary,
                reason: RouteReason::Canary,
            },
            None => Route {
                version: &self.stable,
                reason: RouteReason::Stable,
            },
        }
    }
}

/// A key's bucket in `0..10_000`: the first 8 bytes of
/// `sha256(salt || 0x00 || key)`, big-endian, modulo 10 000. The zero byte
/// keeps `("ab", "c")` and `("a", "bc")` apart. The modulo bias is below
/// 10⁻¹⁵ and irrelevant here.
pub fn bucket(salt: &str, key: &str) -> u32 {
    let mut h = Sha256::new();
    h.update(salt.as_bytes());
    h.update([0u8]);
    h.update(key.as_bytes());
    let d = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&d[..8]);
    (u64::from_be_bytes(first) % u64::from(BUCKETS)) as u32
}

/// Maps a uniform u64 to `0..10_000` with the multiply-shift reduction
/// (Lemire 2019, "Fast random integer generation in an interval"), which uses
/// the high bits and needs no division.
fn random_bucket(random: u64) -> u32 {
    ((u128::from(random) * u128::from(BUCKETS)) >> 64) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SplitMix64 (Steele, Lea, Flood 2014), a test-only stream of draws.
    fn splitmix(state: &mut u64) -> u64 {
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    #[test]
    fn bucket_matches_an_independent_sha256() {
        // python3 -c "import hashlib; print(int(hashlib.sha256(b'salt\x00user-42').hexdigest()[:16], 16) % 10000)"
        assert_eq!(bucket("salt", "user-42"), 9281);
        assert_ne!(bucket("ab", "c"), bucket("a", "bc"));
    }

    #[test]
    fn construction_errors_name_the_problem() {
        assert_eq!(
            Split::new("v1", Some("v2"), 101, None)
                .unwrap_err()
                .to_string(),
            "canary percent 101 is over 100"
        );
        assert_eq!(
            Split::new("v1", None, 5, None).unwrap_err().to_string(),
            "canary percent 5 given but there is no canary version"
        );
        assert_eq!(
            Split::new("v1", Some("v1"), 5, None)
                .unwrap_err()
                .to_string(),
            "the canary version \"v1\" is the stable version"
        );
        assert_eq!(
            Split::new("", None, 0, None).unwrap_err(),
            RoutingError::EmptyVersion("stable")
        );
        assert_eq!(
            Split::new("v1", None, 0, Some("")).unwrap_err(),
            RoutingError::EmptyVersion("shadow")
        );
        let s = Split::new("v1", Some("v2"), 100, Some("v3")).unwrap();
        assert_eq!(s.salt, "v2");
        assert_eq!(s.shadow.as_deref(), Some("v3"));
    }

    #[test]
    fn random_weights_hold_over_100k_draws() {
        for percent in [1u8, 5, 25, 50, 90] {
            let s = Split::new("stable", Some("canary"), percent, None).unwrap();
            let mut state = u64::from(percent);
            let n = 100_000;
            let canary = (0..n)
                .filter(|_| {
                    let r = s.route(None, splitmix(&mut state));
                    assert_ne!(r.reason, RouteReason::Sticky);
                    r.version == "canary"
                })
                .count();
            let share = canary as f64 / n as f64;
            let p = f64::from(percent) / 100.0;
            // 5 binomial standard deviations.
            let tol = 5.0 * (p * (1.0 - p) / n as f64).sqrt();
            assert!((share - p).abs() < tol, "{percent}%: got {share}");
        }
    }

    #[test]
    fn keyed_weights_hold_and_keys_are_sticky() {
        let s = Split::new("stable", Some("canary"), 20, None).unwrap();
        let n = 100_000;
        let mut canary = 0;
        for i in 0..n {
            let key = format!("user-{i}");
            let a = s.route(Some(&key), i);
            let b = s.route(Some(&key), !i);
            assert_eq!(a, b, "key {key} moved between requests");
            assert_eq!(a.reason, RouteReason::Sticky);
            canary += usize::from(a.version == "canary");
        }
        let share = canary as f64 / n as f64;
        assert!((share - 0.2).abs() < 5.0 * (0.2f64 * 0.8 / 100_000.0).sqrt());
    }

    #[test]
    fn raising_the_percent_only_moves_keys_to_the_canary() {
        let keys: Vec<String> = (0..20_000).map(|i| format!("k{i}")).collect();
        let mut previous: Vec<bool> = vec![false; keys.len()];
        for percent in [0u8, 1, 5, 25, 50, 99, 100] {
            let s = Split::new("stable", Some("canary"), percent, None).unwrap();
            let now: Vec<bool> = keys
                .iter()
                .map(|k| s.route(Some(k), 0).version == "canary")
                .collect();
            for (i, (&was, &is)) in previous.iter().zip(&now).enumerate() {
                assert!(!was || is, "key {} left the canary at {percent}%", keys[i]);
            }
            previous = now;
        }
    }

    #[test]
    fn zero_and_hundred_percent_are_exact() {
        let zero = Split::new("stable", Some("canary"), 0, None).unwrap();
        let all = Split::new("stable", Some("canary"), 100, None).unwrap();
        for r in [0, 1, u64::MAX / 2, u64::MAX - 1, u64::MAX] {
            assert_eq!(zero.route(None, r).version, "stable");
            assert_eq!(all.route(None, r).version, "canary");
        }
        for i in 0..10_000 {
            let k = i.to_string();
            assert_eq!(zero.route(Some(&k), 0).version, "stable");
            assert_eq!(all.route(Some(&k), 0).version, "canary");
        }
        let none = Split::new("stable", None, 0, Some("shadow")).unwrap();
        assert_eq!(
            none.route(Some("k"), u64::MAX),
            Route {
                version: "stable",
                reason: RouteReason::Stable
            }
        );
    }

    #[test]
    fn the_salt_reshuffles_keys() {
        let a = Split::new("stable", Some("canary"), 50, None).unwrap();
        let b = a.clone().with_salt("other");
        let moved = (0..1000)
            .filter(|i| {
                let k = format!("u{i}");
                a.route(Some(&k), 0).version != b.route(Some(&k), 0).version
            })
            .count();
        // Independent halves disagree about half the time.
        assert!((400..600).contains(&moved), "{moved}");
    }
}
