//! Unit tests of [`super`]: entries, actions, timestamps and details checks.
//! Kept in their own file so `entry.rs` holds only the entry format.

use super::*;

fn first() -> Entry {
    Entry::next(
        None,
        "2025-06-01T12:00:00Z",
        "alice",
        Action::Submission,
        "fraud-model@3",
        json!({"component": "sha256:ab", "score": 0.25}),
    )
    .unwrap()
}

/// The hash is SHA-256 over exactly the documented canonical bytes
/// (docs/audit.md shows this entry and its hash).
#[test]
fn the_hash_covers_the_canonical_json_of_every_other_field() {
    let e = first();
    let preimage = format!(
        r#"{{"action":"submission","actor":"alice","details":{{"component":"sha256:ab","score":0.25}},"prev_hash":"{GENESIS_PREV_HASH}","seq":0,"subject":"fraud-model@3","time":"2025-06-01T12:00:00Z"}}"#
    );
    assert_eq!(e.hash, hex::encode(Sha256::digest(preimage.as_bytes())));
    assert_eq!(
        e.hash,
        "f0a4875ccb35da2a0fa61ee29ff25bf2ad1510be29aee7ae6db3058204b17573"
    );
    let line = e.to_line().unwrap();
    assert!(line.starts_with(r#"{"action":"submission","actor":"alice","details":"#));
    assert_eq!(serde_json::from_str::<Entry>(&line).unwrap(), e);
}

#[test]
fn every_field_changes_the_hash() {
    let e = first();
    let mut variants = vec![];
    let mut v = e.clone();
    v.seq = 1;
    variants.push(v);
    let mut v = e.clone();
    v.time = "2025-06-01T12:00:01Z".into();
    variants.push(v);
    let mut v = e.clone();
    v.actor = "mallory".into();
    variants.push(v);
    let mut v = e.clone();
    v.action = Action::Promotion;
    variants.push(v);
    let mut v = e.clone();
    v.subject = "fraud-model@4".into();
    variants.push(v);
    let mut v = e.clone();
    v.details["score"] = json!(0.26);
    variants.push(v);
    let mut v = e.clone();
    v.prev_hash = "1".repeat(64);
    variants.push(v);
    for v in variants {
        assert_ne!(v.compute_hash().unwrap(), e.hash, "{v:?}");
    }
}

#[test]
fn the_next_entry_links_to_the_head() {
    let a = first();
    let b = Entry::next(
        Some(&a.head()),
        "2025-06-01T12:00:01Z",
        "bob",
        Action::Approval,
        "fraud-model@3",
        Value::Null,
    )
    .unwrap();
    assert_eq!(b.seq, 1);
    assert_eq!(b.prev_hash, a.hash);
    assert_eq!(a.prev_hash, GENESIS_PREV_HASH);
}

#[test]
fn actions_round_trip_by_name_and_custom_names_are_checked() {
    for (a, name) in Action::KNOWN {
        assert_eq!(a.as_str(), name);
        assert_eq!(Action::from_name(name), a);
        assert_eq!(serde_json::to_value(&a).unwrap(), json!(name));
    }
    assert_eq!(
        Action::other("policy.change").unwrap(),
        Action::Other("policy.change".into())
    );
    assert_eq!(Action::other("rollback").unwrap(), Action::Rollback);
    for bad in [
        "",
        "Rollback",
        "a b",
        "x\n",
        &"a".repeat(MAX_NAME_BYTES + 1),
    ] {
        assert!(Action::other(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn timestamps_are_strict_rfc3339_utc_and_ordered_by_instant() {
    for ok in [
        "2025-06-01T12:00:00Z",
        "2024-02-29T23:59:60Z",
        "2025-06-01T12:00:00.5Z",
        "2025-06-01T12:00:00.123456789Z",
    ] {
        assert!(Timestamp::parse(ok).is_ok(), "{ok}");
    }
    for bad in [
        "",
        "2025-06-01 12:00:00Z",
        "2025-06-01t12:00:00z",
        "2025-06-01T12:00:00+00:00",
        "2025-06-01T12:00:00",
        "2025-02-29T12:00:00Z",
        "2025-13-01T12:00:00Z",
        "2025-06-01T24:00:00Z",
        "2025-06-01T12:00:00.Z",
        "2025-06-01T12:00:00.1234567890Z",
        "２025-06-01T12:00:00Z",
    ] {
        assert!(Timestamp::parse(bad).is_err(), "{bad}");
    }
    let t = |s| Timestamp::parse(s).unwrap();
    assert!(t("2025-06-01T12:00:00Z") < t("2025-06-01T12:00:00.5Z"));
    assert_eq!(t("2025-06-01T12:00:00.5Z"), t("2025-06-01T12:00:00.500Z"));
    assert!(t("2025-06-01T12:00:00.9Z") < t("2025-06-01T12:00:01Z"));
    assert!(t("2024-12-31T23:59:59Z") < t("2025-01-01T00:00:00Z"));
}

#[test]
fn utc_now_is_a_valid_timestamp_and_the_calendar_is_right() {
    Timestamp::parse(&utc_now()).unwrap();
    assert_eq!(format_unix(0, 0), "1970-01-01T00:00:00.000000Z");
    assert_eq!(format_unix(951_782_400, 7), "2000-02-29T00:00:00.000007Z");
    assert_eq!(format_unix(1_748_779_199, 0), "2025-06-01T11:59:59.000000Z");
    assert_eq!(format_unix(4_107_542_400, 0), "2100-03-01T00:00:00.000000Z");
}

#[test]
fn what_would_not_read_back_exactly_is_refused() {
    let next = |details| {
        Entry::next(
            None,
            "2025-06-01T12:00:00Z",
            "alice",
            Action::KeyChange,
            "",
            details,
        )
    };
    let err = next(json!({"a": [1, {"b/c": 9007199254740993u64}]})).unwrap_err();
    assert_eq!(
        err,
        EntryError::UnsafeInteger {
            path: "/a/1/b~1c".into(),
            value: "9007199254740993".into()
        }
    );
    assert!(next(json!({"n": -9007199254740992i64})).is_err());
    assert!(next(json!({"n": 9007199254740991u64, "f": 1e300})).is_ok());
    let mut deep = json!(1);
    for _ in 0..canonical::MAX_DEPTH - 1 {
        deep = json!([deep]);
    }
    assert!(next(deep.clone()).is_ok());
    assert!(matches!(next(json!([deep])), Err(EntryError::Canonical(_))));
    assert!(matches!(
        Entry::next(None, "now", "a", Action::Rollback, "", Value::Null),
        Err(EntryError::BadTime(_))
    ));
    assert!(matches!(
        Entry::next(
            None,
            "2025-06-01T12:00:00Z",
            "",
            Action::Rollback,
            "",
            Value::Null
        ),
        Err(EntryError::BadActor(0))
    ));
}
