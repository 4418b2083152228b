//! One gate run on a worker thread: read it back, mark it running, load
//! its inputs into scratch, run the gate engine, sign the verdict, and
//! record the outcome (only over `running`, so a run a stop already
//! recorded interrupted keeps that status). Kept apart from the queue in
//! `runs.rs`, which only decides which run a worker takes and when.

use super::OnWorker;
use crate::audit::Event;
use crate::error::ApiError;
use crate::state::AppState;
use airlock_attest::gate::attest_gate;
use airlock_audit::Action;
use airlock_core::digest::Digest;
use airlock_core::gate::spec::GateSpec;
use airlock_gate::runner::{GateJob, ModelUnderTest};
use serde_json::json;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

/// The run as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
struct RunRow {
    model: String,
    version: String,
    gate: String,
    gate_version: i64,
    baseline: Option<String>,
    status: String,
    seed: Option<String>,
}

/// Runs one queued run to its end and records the outcome.
pub(super) fn execute(state: &Arc<AppState>, rt: &tokio::runtime::Handle, run_id: &str) {
    let row: Result<Option<RunRow>, sqlx::Error> = rt.block_on(
        sqlx::query_as(
            "SELECT model, version, gate, gate_version, baseline, status, seed FROM runs WHERE id = $1",
        )
        .bind(run_id)
        .fetch_optional(&state.db),
    );
    let row = match row {
        Ok(Some(r)) if r.status == "queued" => r,
        Ok(_) => return,
        Err(e) => {
            tracing::error!(run = %run_id, error = %e, "run {run_id}: {e}");
            return;
        }
    };
    // On a worker from here until `_on_worker` drops (whatever the exit).
    let _on_worker = OnWorker::new(&state.runs, run_id);
    let started = rt.block_on(async {
        let mut change = state.begin().await?;
        let r = sqlx::query(
            "UPDATE runs SET status = 'running', started_at = $1 WHERE id = $2 AND status = 'queued'",
        )
        .bind(crate::db::now())
        .bind(run_id)
        .execute(&mut *change.tx)
        .await?;
        state.commit(change).await?;
        Ok::<_, ApiError>(r)
    });
    let outcome = match started {
        Ok(r) if r.rows_affected() == 1 => Some(judge(state, rt, &row)),
        _ => None,
    };
    if let Some(outcome) = outcome {
        let cancelled = state.runs.is_cancelled(run_id);
        if let Err(e) = rt.block_on(record(state, run_id, &row, outcome, cancelled)) {
            tracing::error!(run = %run_id, error = %e, "recording run {run_id}: {e}");
        }
    }
}

/// What a run produced.
enum Outcome {
    /// The gate judged the candidate.
    Judged {
        report: serde_json::Value,
        passed: bool,
        attestation: String,
        key_id: String,
        seed: u64,
    },
    /// The gate could not judge it (a broken gate, baseline or input).
    Error(String),
}

/// Loads the inputs into a scratch directory and runs the gate.
fn judge(state: &Arc<AppState>, rt: &tokio::runtime::Handle, row: &RunRow) -> Outcome {
    match judge_inner(state, rt, row) {
        Ok(o) => o,
        Err(e) => Outcome::Error(e),
    }
}

fn judge_inner(
    state: &Arc<AppState>,
    rt: &tokio::runtime::Handle,
    row: &RunRow,
) -> Result<Outcome, String> {
    let version: (String, Option<String>, Option<String>) = rt
        .block_on(
            sqlx::query_as(
                "SELECT plugin, bundle_archive, bundle_digest FROM versions WHERE model = $1 AND version = $2",
            )
            .bind(&row.model)
            .bind(&row.version)
            .fetch_one(&state.db),
        )
        .map_err(|e| format!("version record: {e}"))?;
    let gate: (String, String) = rt
        .block_on(
            sqlx::query_as("SELECT toml, digest FROM gates WHERE name = $1 AND version = $2")
                .bind(&row.gate)
                .bind(row.gate_version)
                .fetch_one(&state.db),
        )
        .map_err(|e| format!("gate record: {e}"))?;
    let scratch = crate::state::scratch_dir(state, "run").map_err(|e| e.message)?;
    let candidate = load_model(
        state,
        scratch.path(),
        "candidate",
        &version.0,
        version.1.as_deref(),
        version.2.as_deref(),
    )?;
    let baseline = match &row.baseline {
        Some(b) => {
            let bv: (String, Option<String>, Option<String>) = rt
                .block_on(
                    sqlx::query_as(
                        "SELECT plugin, bundle_archive, bundle_digest FROM versions WHERE model = $1 AND version = $2",
                    )
                    .bind(&row.model)
                    .bind(b)
                    .fetch_one(&state.db),
                )
                .map_err(|e| format!("baseline record: {e}"))?;
            Some(load_model(
                state,
                scratch.path(),
                "baseline",
                &bv.0,
                bv.1.as_deref(),
                bv.2.as_deref(),
            )?)
        }
        None => None,
    };
    let gate_dir = scratch.path().join("gate");
    crate::state::private_dir(&gate_dir).map_err(|e| format!("scratch directory: {e}"))?;
    let spec = GateSpec::parse(&gate.0, &gate_dir).map_err(|e| format!("gate: {e}"))?;
    if spec.digest.to_string() != gate.1 {
        return Err("the stored gate's text does not match its digest".into());
    }
    for step in &spec.steps {
        let plugin = crate::gates::pinned(&step.plugin).map_err(|e| e.message)?;
        let path = gate_dir.join(format!("{}.wasm", step.plugin));
        if !path.exists() {
            state
                .blobs
                .materialize(&plugin, &path)
                .map_err(|e| format!("step `{}`: validator: {e}", step.name))?;
        }
        for data in std::iter::once(&step.dataset).chain(step.reference.as_ref()) {
            let name = data.to_string_lossy();
            let digest = crate::gates::pinned(&name).map_err(|e| e.message)?;
            let path = gate_dir.join(&*name);
            if !path.exists() {
                state
                    .blobs
                    .materialize(&digest, &path)
                    .map_err(|e| format!("step `{}`: dataset: {e}", step.name))?;
            }
        }
    }
    let job = GateJob {
        sandbox: state.sandbox.clone(),
        spec: Arc::new(spec),
        candidate,
        baseline,
        plugin_dir: None,
        seed: match &row.seed {
            Some(s) => Some(
                s.parse()
                    .map_err(|_| format!("recorded seed {s} is not a number"))?,
            ),
            None => None,
        },
        data_caps: state.config.data_caps,
    };
    let report = job.run().map_err(|e| e.to_string())?;
    let model_digest = Digest::parse(&version.0).ok_or("bad plugin digest")?;
    let bundle_digest = version.2.as_deref().and_then(Digest::parse);
    let (envelope, key_id) = {
        let keys = state.keys.read().unwrap_or_else(|p| p.into_inner());
        let env = attest_gate(
            &report.verdict,
            model_digest,
            bundle_digest,
            &keys.current,
            keys.current.key_id(),
            SystemTime::now(),
        )
        .map_err(|e| format!("attesting: {e}"))?;
        (env, keys.current.key_id().hex())
    };
    let passed = report.verdict.passed;
    let seed = report.verdict.seed;
    let report = serde_json::to_value(&report).map_err(|e| format!("report: {e}"))?;
    Ok(Outcome::Judged {
        report,
        passed,
        attestation: envelope.to_json(),
        key_id,
        seed,
    })
}

/// Loads a model component and unpacks its bundle for a run. The
/// component is read whole (so its blob's hash is checked), and the
/// unpacked bundle must have the tree digest recorded for the version.
fn load_model(
    state: &Arc<AppState>,
    scratch: &Path,
    role: &str,
    plugin: &str,
    bundle_archive: Option<&str>,
    bundle_digest: Option<&str>,
) -> Result<ModelUnderTest, String> {
    let digest = Digest::parse(plugin).ok_or_else(|| format!("{role}: bad plugin digest"))?;
    let mut bytes = Vec::new();
    state
        .blobs
        .open(&digest)
        .and_then(|mut r| {
            r.read_to_end(&mut bytes)
                .map_err(|source| airlock_blobs::BlobError::Io {
                    path: digest.to_string().into(),
                    source,
                })
        })
        .map_err(|e| format!("{role} component: {e}"))?;
    let plugin = state
        .sandbox
        .load(&bytes)
        .map_err(|e| format!("{role}: {e}"))?;
    let bundle = match bundle_archive {
        Some(a) => {
            let a = Digest::parse(a).ok_or_else(|| format!("{role}: bad bundle digest"))?;
            let dir = scratch.join(format!("{role}-bundle"));
            crate::state::private_dir(&dir).map_err(|e| format!("scratch directory: {e}"))?;
            let bundle = crate::bundles::unpack_checked(state, &a, bundle_digest, &dir)
                .map_err(|e| format!("{role} bundle: {e}"))?;
            Some(bundle)
        }
        None => None,
    };
    Ok(ModelUnderTest { plugin, bundle })
}

/// Runs one of [`record`]'s finishing UPDATEs, each written only over
/// `status = 'running'`, and says whether it applied. `false` means a stop
/// (or a start after a crash) already recorded the run: the caller then
/// returns without recording anything, dropping its change.
async fn finish_if_running<'q>(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    update: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
) -> Result<bool, ApiError> {
    debug_assert!(
        sqlx::Execute::sql(&update).ends_with("AND status = 'running'"),
        "a finishing UPDATE must only apply over status = 'running'"
    );
    Ok(update.execute(&mut **tx).await?.rows_affected() > 0)
}

/// Records a finished run and its audit entries, only over `running`: a run
/// that a stop (or a start after a crash) already recorded as interrupted
/// keeps that status, and its late result is discarded with nothing audited
/// (the change is dropped, so the transaction rolls back).
async fn record(
    state: &Arc<AppState>,
    run_id: &str,
    row: &RunRow,
    outcome: Outcome,
    cancelled: bool,
) -> Result<(), ApiError> {
    let mut change = state.begin().await?;
    let subject = format!("{}/{}", row.model, row.version);
    let now = crate::db::now();
    if cancelled {
        let update = sqlx::query("UPDATE runs SET status = 'cancelled', reason = 'cancelled while running; its result was discarded', finished_at = $1 WHERE id = $2 AND status = 'running'")
            .bind(&now)
            .bind(run_id);
        if !finish_if_running(&mut change.tx, update).await? {
            return Ok(());
        }
        change.record(Event::new(
            "server",
            Action::GateRun,
            subject,
            json!({ "run": run_id, "status": "cancelled" }),
        ));
        return state.commit(change).await;
    }
    match outcome {
        Outcome::Judged {
            report,
            passed,
            attestation,
            key_id,
            seed,
        } => {
            let status = if passed { "passed" } else { "refused" };
            let update = sqlx::query(
                "UPDATE runs SET status = $1, report = $2, attestation = $3, key_id = $4, finished_at = $5, seed = $7 WHERE id = $6 AND status = 'running'",
            )
            .bind(status)
            .bind(report.to_string())
            .bind(&attestation)
            .bind(&key_id)
            .bind(&now)
            .bind(run_id)
            .bind(seed.to_string());
            if !finish_if_running(&mut change.tx, update).await? {
                return Ok(());
            }
            change.record(Event::new(
                "server",
                Action::GateRun,
                subject.clone(),
                json!({ "run": run_id, "status": status, "gate": row.gate, "gate_version": row.gate_version,
                        "gate_digest": report.get("gate_digest"), "seed": seed.to_string() }),
            ));
            change.record(Event::new(
                "server",
                Action::Attestation,
                subject,
                json!({ "run": run_id, "passed": passed, "key_id": key_id,
                        "sha256": hex::encode(<sha2::Sha256 as sha2::Digest>::digest(attestation.as_bytes())) }),
            ));
        }
        Outcome::Error(reason) => {
            let update = sqlx::query(
                "UPDATE runs SET status = 'error', reason = $1, finished_at = $2 WHERE id = $3 AND status = 'running'",
            )
            .bind(&reason)
            .bind(&now)
            .bind(run_id);
            if !finish_if_running(&mut change.tx, update).await? {
                return Ok(());
            }
            change.record(Event::new(
                "server",
                Action::GateRun,
                subject,
                json!({ "run": run_id, "status": "error", "reason": reason }),
            ));
        }
    }
    state.commit(change).await
}
