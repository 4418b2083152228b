//! Races on the control API, each repeated 50 times: concurrent
//! submissions of one version, submissions against a full run queue, and
//! promotions racing a gate switch. Every round insists on no 5xx, on a
//! state that agrees with the answers, and on an audit log that records
//! exactly what happened. They run on SQLite, and on PostgreSQL when
//! `AIRLOCK_TEST_DATABASE_URL` names one.

use crate::server::{Harness, message};
use axum::http::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;

const ROUNDS: usize = 50;

/// Lets the other side of a race get ahead by a different amount each
/// round (0 to 9 steps of `step`), so that the rounds spread over both
/// orders and the moments between. Nothing relies on it: every order is
/// accepted, and what each order must leave behind is checked.
pub(crate) async fn jitter(round: usize, step: std::time::Duration) {
    tokio::time::sleep(step * (round % 10) as u32).await;
}

/// The audit entries after `seq` (all of them, oldest first).
pub(crate) async fn audit_after(h: &Harness, seq: Option<u64>) -> Vec<Value> {
    let path = match seq {
        Some(s) => format!("/v1/audit?after_seq={s}&limit=1000"),
        None => "/v1/audit?limit=1000".to_string(),
    };
    let v = h.ok("GET", &path, None).await;
    let mut entries = v["entries"].as_array().unwrap().clone();
    entries.sort_by_key(|e| e["seq"].as_u64().unwrap());
    entries
}

/// The audit log's last sequence number.
pub(crate) fn audit_head(h: &Harness) -> Option<u64> {
    h.state
        .audit_log
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .head()
        .map(|h| h.seq)
}

async fn submit(h: &Harness, token: &str, version: &str, bundle: &str) -> (StatusCode, Value) {
    h.call(
        "POST",
        "/v1/models/breast-cancer/versions",
        Some(token),
        Some(json!({ "version": version, "plugin": "xgboost@1.0.0", "bundle": bundle })),
    )
    .await
}

/// Cancels a run so that the single worker is not kept busy by rounds that
/// only test the recording (a run already taken is cancelled as it runs).
async fn cancel(h: &Harness, run: &str) {
    let (s, v) = h
        .call(
            "POST",
            &format!("/v1/runs/{run}/cancel"),
            Some(&h.admin.clone()),
            None,
        )
        .await;
    assert!(
        s == StatusCode::OK || s == StatusCode::CONFLICT,
        "cancel {run}: {s} {v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_submissions_of_one_version_record_it_once_and_answer_409_for_other_bytes() {
    let h = Arc::new(
        Harness::with(|c| {
            c.workers = 1;
            c.queue_depth = 4 * ROUNDS;
        })
        .await,
    );
    h.deployable(0).await;
    let alice = h.token("alice", "submitter").await;
    let good = h.bundle("model-v1").await;
    let other = h.bundle("model-v2-degraded").await;
    let digest = |b: &str| b.to_string();
    for round in 0..ROUNDS {
        let version = format!("1.{round}.0");
        let before = audit_head(&h);
        // Two submissions of the same bytes and one of other bytes, at once.
        let bundles = [good.clone(), good.clone(), other.clone()];
        let tasks: Vec<_> = bundles
            .iter()
            .map(|b| {
                let (h, alice, version, b) = (h.clone(), alice.clone(), version.clone(), b.clone());
                tokio::spawn(async move { submit(&h, &alice, &version, &b).await })
            })
            .collect();
        let mut answers = Vec::new();
        for t in tasks {
            answers.push(t.await.unwrap());
        }
        for (s, v) in &answers {
            assert!(
                !s.is_server_error(),
                "round {round}: a race answered {s}: {v}"
            );
        }
        let created: Vec<usize> = (0..3)
            .filter(|&i| answers[i].0 == StatusCode::CREATED)
            .collect();
        assert_eq!(created.len(), 1, "round {round}: {answers:?}");
        let winner = created[0];
        let stored = h
            .ok(
                "GET",
                &format!("/v1/models/breast-cancer/versions/{version}"),
                None,
            )
            .await;
        assert_eq!(
            stored["version"]["bundle_archive"],
            digest(&bundles[winner]),
            "round {round}"
        );
        for (i, (s, v)) in answers.iter().enumerate() {
            if i == winner {
                continue;
            }
            if bundles[i] == bundles[winner] {
                // The same bytes again: the same version, and no new run.
                assert_eq!(*s, StatusCode::OK, "round {round}: {v}");
                assert_eq!(v["run"], Value::Null, "round {round}: {v}");
            } else {
                assert_eq!(*s, StatusCode::CONFLICT, "round {round}: {v}");
                assert!(
                    message(v).contains(&format!(
                        "version {version} of model breast-cancer already names other bytes"
                    )),
                    "round {round}: {v}"
                );
            }
        }
        // One submission and one queued run in the log, for this version.
        let entries = audit_after(&h, before).await;
        let subject = format!("breast-cancer/{version}");
        let mine = |action: &str| {
            entries
                .iter()
                .filter(|e| e["action"] == action && e["subject"] == subject.as_str())
                .count()
        };
        assert_eq!(mine("submission"), 1, "round {round}: {entries:?}");
        // The run may already have been taken and finished (its later
        // entries say so); it was queued exactly once.
        let queued = entries
            .iter()
            .filter(|e| {
                e["action"] == "gate_run"
                    && e["subject"] == subject.as_str()
                    && e["details"]["status"] == "queued"
            })
            .count();
        assert_eq!(queued, 1, "round {round}: {entries:?}");
        cancel(&h, answers[winner].1["run"].as_str().unwrap()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_run_queue_refuses_before_recording_so_no_503_follows_a_committed_run() {
    let h = Arc::new(
        Harness::with(|c| {
            c.workers = 1;
            c.queue_depth = 1;
        })
        .await,
    );
    h.deployable(0).await;
    let alice = h.token("alice", "submitter").await;
    let bundle = h.bundle("model-v1").await;
    let mut refused = 0;
    for round in 0..ROUNDS {
        let before = audit_head(&h);
        let versions: Vec<String> = (0..3).map(|k| format!("2.{round}.{k}")).collect();
        let tasks: Vec<_> = versions
            .iter()
            .map(|v| {
                let (h, alice, v, b) = (h.clone(), alice.clone(), v.clone(), bundle.clone());
                tokio::spawn(async move { submit(&h, &alice, &v, &b).await })
            })
            .collect();
        let mut answers = Vec::new();
        for t in tasks {
            answers.push(t.await.unwrap());
        }
        let entries = audit_after(&h, before).await;
        for (version, (s, v)) in versions.iter().zip(&answers) {
            let subject = format!("breast-cancer/{version}");
            let recorded = entries
                .iter()
                .filter(|e| e["subject"] == subject.as_str())
                .count();
            let (gs, gv) = h
                .call(
                    "GET",
                    &format!("/v1/models/breast-cancer/versions/{version}"),
                    Some(&h.admin.clone()),
                    None,
                )
                .await;
            match *s {
                StatusCode::CREATED => {
                    assert_eq!(gs, StatusCode::OK, "round {round}: {gv}");
                    assert_eq!(recorded, 2, "round {round}: {entries:?}");
                    cancel(&h, v["run"].as_str().unwrap()).await;
                }
                StatusCode::SERVICE_UNAVAILABLE => {
                    refused += 1;
                    assert!(message(v).contains("queue is full"), "{v}");
                    // Refused: nothing of it was recorded.
                    assert_eq!(gs, StatusCode::NOT_FOUND, "round {round}: {gv}");
                    assert_eq!(recorded, 0, "round {round}: {entries:?}");
                }
                other => panic!("round {round}: {version} answered {other}: {v}"),
            }
        }
    }
    assert!(
        refused > 0,
        "three submissions at once against a queue of one never filled it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_promotion_racing_a_gate_switch_is_judged_in_the_transaction_that_moves_the_alias() {
    let h = Arc::new(Harness::new().await);
    h.deployable(0).await;
    let alice = h.token("alice", "submitter").await;
    for v in ["1.0.0", "1.0.1"] {
        let (_, r) = h.submit_and_wait(&alice, v, "model-v1").await;
        assert_eq!(r["run"]["status"], "passed", "{r}");
    }
    // Gate version 2: no version has a run under it.
    let (s, v) = h.publish_stricter_gate(2).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let switch = |to: u64| {
        let h = h.clone();
        async move {
            h.call(
                "PUT",
                "/v1/gates/breast-cancer/current",
                Some(&h.admin.clone()),
                Some(json!({ "version": to })),
            )
            .await
        }
    };
    let (s, v) = switch(1).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    h.ok(
        "POST",
        "/v1/models/breast-cancer/promote",
        Some(json!({ "version": "1.0.0" })),
    )
    .await;
    let mut production = "1.0.0".to_string();
    let (mut promoted, mut refused) = (0, 0);
    for round in 0..ROUNDS {
        let target = if production == "1.0.0" {
            "1.0.1"
        } else {
            "1.0.0"
        };
        let before = audit_head(&h);
        let hp = h.clone();
        let promote = tokio::spawn(async move {
            hp.call(
                "POST",
                "/v1/models/breast-cancer/promote",
                Some(&hp.admin.clone()),
                Some(json!({ "version": target })),
            )
            .await
        });
        // The switch starts at a different point of the promotion each
        // round, so that rounds cover both orders and the moments between.
        jitter(round, std::time::Duration::from_micros(1500)).await;
        let gate = tokio::spawn(switch(2));
        let (ps, pv) = promote.await.unwrap();
        let (gs, gv) = gate.await.unwrap();
        assert_eq!(gs, StatusCode::OK, "round {round}: {gv}");
        let entries = audit_after(&h, before).await;
        let seq_of = |action: &str| {
            entries
                .iter()
                .find(|e| e["action"] == action)
                .map(|e| e["seq"].as_u64().unwrap())
        };
        let model = h.ok("GET", "/v1/models/breast-cancer", None).await;
        let now = model["aliases"]["production"]["version"]
            .as_str()
            .unwrap()
            .to_string();
        match ps {
            StatusCode::OK => {
                promoted += 1;
                // Judged under gate version 1, so moved before the switch.
                let p = seq_of("promotion").expect("a promotion entry");
                let g = seq_of("gate_change").expect("a gate entry");
                assert!(
                    p < g,
                    "round {round}: the alias moved after the gate switch: {entries:?}"
                );
                assert_eq!(now, target, "round {round}");
                production = target.to_string();
            }
            StatusCode::UNPROCESSABLE_ENTITY => {
                refused += 1;
                assert!(
                    message(&pv)
                        .contains("no finished gate run under gate breast-cancer version 2"),
                    "round {round}: {pv}"
                );
                assert_eq!(seq_of("promotion"), None, "round {round}: {entries:?}");
                assert_eq!(now, production, "round {round}");
            }
            other => panic!("round {round}: promotion answered {other}: {pv}"),
        }
        let (s, v) = switch(1).await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    eprintln!("{promoted} promoted before the switch, {refused} refused after it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rollback_racing_a_promotion_is_decided_in_the_transaction_that_moves_the_alias() {
    let h = Arc::new(Harness::new().await);
    h.deployable(0).await;
    let alice = h.token("alice", "submitter").await;
    for v in ["1.0.0", "1.0.1", "1.0.2"] {
        let (_, r) = h.submit_and_wait(&alice, v, "model-v1").await;
        assert_eq!(r["run"]["status"], "passed", "{r}");
    }
    let promote = |v: &'static str| {
        let h = h.clone();
        async move {
            h.call(
                "POST",
                "/v1/models/breast-cancer/promote",
                Some(&h.admin.clone()),
                Some(json!({ "version": v })),
            )
            .await
        }
    };
    for v in ["1.0.0", "1.0.1"] {
        let (s, b) = promote(v).await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }
    let (mut before_it, mut after_it, mut conflicts) = (0, 0, 0);
    for round in 0..ROUNDS {
        // Every round starts with 1.0.1 in production.
        let (s, b) = promote("1.0.1").await;
        assert_eq!(s, StatusCode::OK, "round {round}: {b}");
        let before = audit_head(&h);
        // Which side waits alternates, and by how much varies, so that the
        // rounds cover both orders and the moments between.
        let hr = h.clone();
        let rollback = tokio::spawn(async move {
            if round % 2 == 1 {
                jitter(round / 2, std::time::Duration::from_millis(2)).await;
            }
            hr.call(
                "POST",
                "/v1/models/breast-cancer/rollback",
                Some(&hr.admin.clone()),
                Some(json!({ "version": "1.0.0" })),
            )
            .await
        });
        if round % 2 == 0 {
            jitter(round / 2, std::time::Duration::from_micros(1500)).await;
        }
        let (ps, pv) = promote("1.0.2").await;
        assert_eq!(ps, StatusCode::OK, "round {round}: promotion: {pv}");
        let (rs, rv) = rollback.await.unwrap();
        let entries = audit_after(&h, before).await;
        let moves: Vec<&Value> = entries
            .iter()
            .filter(|e| e["action"] == "rollback" || e["action"] == "promotion")
            .collect();
        let model = h.ok("GET", "/v1/models/breast-cancer", None).await;
        let now = model["aliases"]["production"]["version"]
            .as_str()
            .unwrap()
            .to_string();
        // Each recorded move starts from where the one before it left the
        // alias: no move is planned against one state and applied to another.
        let mut at = "1.0.1".to_string();
        for m in &moves {
            assert_eq!(
                m["details"]["from"],
                at.as_str(),
                "round {round}: {moves:?}"
            );
            at = m["subject"]
                .as_str()
                .unwrap()
                .trim_start_matches("breast-cancer/")
                .to_string();
        }
        assert_eq!(now, at, "round {round}: {moves:?}");
        match rs {
            StatusCode::OK => {
                assert_eq!(moves.len(), 2, "round {round}: {moves:?}");
                assert_eq!(
                    rv["previous"],
                    moves.iter().find(|m| m["action"] == "rollback").unwrap()["details"]["from"],
                    "round {round}: {rv}"
                );
                if moves[0]["action"] == "rollback" {
                    before_it += 1;
                    assert_eq!(now, "1.0.2", "round {round}");
                } else {
                    after_it += 1;
                    assert_eq!(now, "1.0.0", "round {round}");
                }
            }
            StatusCode::CONFLICT => {
                conflicts += 1;
                assert!(
                    message(&rv).contains("while this rollback was prepared"),
                    "round {round}: {rv}"
                );
                assert_eq!(moves.len(), 1, "round {round}: {moves:?}");
                assert_eq!(now, "1.0.2", "round {round}");
            }
            other => panic!("round {round}: rollback answered {other}: {rv}"),
        }
    }
    eprintln!(
        "{before_it} rollbacks before the promotion, {after_it} after it, {conflicts} refused as planned against a replaced version"
    );
}
