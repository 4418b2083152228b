//! Serving runs exactly the snapshot the gate judged: a pre-initialised
//! model's passing attestation names the snapshot every gate call ran, and
//! a version whose snapshot here is another one is refused before any
//! alias moves or any request reaches it.

use crate::server::{Harness, message};
use airlock_attest::Envelope;
use airlock_attest::gate::verify_attestation;
use airlock_attest::intoto::PAYLOAD_TYPE;
use airlock_core::digest::Digest;
use axum::http::StatusCode;
use serde_json::json;

const MODEL: &str = "breast-cancer";

async fn set_attestation(h: &Harness, run: &str, att: &str) {
    sqlx::query("UPDATE runs SET attestation = $1 WHERE id = $2")
        .bind(att)
        .bind(run)
        .execute(&h.state.db)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_other_than_the_one_the_gate_attested_is_never_served() {
    let h = Harness::new().await;
    h.deployable(0).await;
    let admin = h.admin.clone();
    let (run, r) = h.submit_and_wait(&admin, "1.0.0", "model-v1").await;
    assert_eq!(r["run"]["status"], "passed", "{r}");
    let (original,): (String,) = sqlx::query_as("SELECT attestation FROM runs WHERE id = $1")
        .bind(&run)
        .fetch_one(&h.state.db)
        .await
        .unwrap();
    let env = Envelope::from_json(&original).unwrap();
    let attested = verify_attestation(&env, &h.state.key_set(), None)
        .unwrap()
        .snapshot_digest()
        .expect("the xgboost model exports init: the gate ran its snapshot");

    // The same component and bundle, attested by a trusted host key with
    // another snapshot: what a gate on a host whose `init` came out
    // differently would have signed.
    let elsewhere = Digest::of(b"a snapshot no gate here judged");
    let mut statement: serde_json::Value = serde_json::from_slice(&env.payload).unwrap();
    statement["predicate"]["candidate"]["snapshotDigest"] = json!(elsewhere.to_string());
    let forged = {
        let keys = h.state.keys.read().unwrap();
        Envelope::sign(
            PAYLOAD_TYPE,
            serde_json::to_vec(&statement).unwrap(),
            &keys.current,
        )
    };
    assert!(
        verify_attestation(&forged, &h.state.key_set(), None).is_ok(),
        "the planted attestation is validly signed"
    );
    set_attestation(&h, &run, &forged.to_json()).await;

    let promote = json!({ "version": "1.0.0", "reason": "test" });
    let (s, v) = h
        .call(
            "POST",
            &format!("/v1/models/{MODEL}/promote"),
            Some(&admin),
            Some(promote.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["code"], "cannot_serve", "{v}");
    let m = message(&v);
    assert!(
        m.contains(&format!("its snapshot here is {attested}"))
            && m.contains(&format!("gate run {run} attested snapshot {elsewhere}")),
        "{m}"
    );
    assert!(h.state.serving.model(MODEL).is_none(), "nothing is served");
    let model = h.ok("GET", &format!("/v1/models/{MODEL}"), None).await;
    assert!(
        model["aliases"].get("production").is_none(),
        "the alias did not move: {model}"
    );

    // With the attestation the gate made here, the same promotion serves
    // exactly the attested snapshot.
    set_attestation(&h, &run, &original).await;
    let (s, v) = h
        .call(
            "POST",
            &format!("/v1/models/{MODEL}/promote"),
            Some(&admin),
            Some(promote),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let served = h.state.serving.model(MODEL).unwrap().deployment.load_full();
    assert_eq!(
        served.stable.checked.snapshot.as_ref().map(|s| s.digest),
        Some(attested)
    );
}
