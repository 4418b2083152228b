//! `airlock plugin ...` and `airlock gate run`: the commands that load
//! plugins into a local sandbox and run them (scaffolding, building,
//! inspecting, predicting, validating, running a gate). Kept apart from the
//! crate root so that the root is the dispatch from parsed command line to
//! command, and this file what the local commands do.

use crate::args::{Global, Kind, PluginCmd};
use crate::exit::{CliError, one_line};
use crate::{sandbox, sandbox_and_data_caps, scaffold, signing, terminal};
use airlock_core::limits::LimitRequest;
use airlock_gate::data;
use airlock_gate::{GateRun, GateSpec, load_model};
use airlock_runtime::sandbox::CallOptions;
use std::path::{Path, PathBuf};

/// Runs one `airlock plugin ...` command.
pub(crate) fn run(cmd: PluginCmd) -> Result<(), CliError> {
    match cmd {
        PluginCmd::New {
            kind,
            name,
            dir,
            sdk,
        } => {
            let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
            let world = match kind {
                Kind::Model => scaffold::Template::Model,
                Kind::Validator => scaffold::Template::Validator,
            };
            scaffold::create(world, &name, &dir, sdk.as_deref())?;
            out!(
                "created {} plugin `{name}` in {}\nbuild it with: airlock plugin build {} -o {name}.wasm",
                match kind {
                    Kind::Model => "model",
                    Kind::Validator => "validator",
                },
                dir.display(),
                dir.display()
            );
            Ok(())
        }
        PluginCmd::Build {
            crate_dir,
            output,
            host,
        } => {
            let built = scaffold::build(&crate_dir, output.as_deref())?;
            let sb = sandbox(&host)?;
            let bytes = sb.read_component(&built).map_err(CliError::from)?;
            let info = sb.inspect(&bytes).map_err(CliError::from)?;
            if !info.refused_imports.is_empty() {
                return Err(CliError::input(format!(
                    "built {} but airlock would refuse it: imports not granted: {}",
                    built.display(),
                    terminal::escape_untrusted(&info.refused_imports.join(", "))
                )));
            }
            out!(
                "{} ({} plugin, {})",
                built.display(),
                info.world,
                info.digest
            );
            Ok(())
        }
        PluginCmd::Inspect { file, json, host } => {
            let sb = sandbox(&host)?;
            let bytes = sb.read_component(&file).map_err(CliError::from)?;
            let info = sb.inspect(&bytes).map_err(CliError::from)?;
            if json {
                out!("{}", terminal::json(&info));
            } else {
                out!("file:    {}", file.display());
                out!("digest:  {}", info.digest);
                out!("world:   {}", info.world);
                match info.contract {
                    Some(c) => out!("contract: airlock:plugin {c}"),
                    None => out!("contract: (imports no airlock:plugin interface)"),
                }
                if info.preinitialized {
                    out!("pre-initialised: yes (exports `init`; calls run from its snapshot)");
                }
                out!("size:    {} bytes", info.size);
                out!(
                    "exports: {}",
                    terminal::escape_untrusted(&info.exports.join(", "))
                );
                out!("imports:");
                for i in &info.imports {
                    let refused = info.refused_imports.contains(i);
                    out!(
                        "  {}{}",
                        if refused { "REFUSED " } else { "" },
                        terminal::escape_untrusted(i)
                    );
                }
                out!("capabilities granted:");
                for c in &info.capabilities {
                    out!("  {:<12} {}", c.name, c.granted_as);
                }
                let g = &info.granted_limits;
                out!(
                    "limits:  fuel {}, timeout {} ms, memory {} bytes, output {} bytes",
                    g.fuel,
                    g.timeout_ms,
                    g.memory_bytes,
                    g.max_output_bytes
                );
                let asked = serde_json::to_value(info.requested_limits).unwrap_or_default();
                let asked: Vec<String> = asked
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, v)| format!("{k} = {v}"))
                    .collect();
                if !asked.is_empty() {
                    out!("manifest asks for: {}", asked.join(", "));
                }
                if !info.refused_limit_raises.is_empty() {
                    out!(
                        "not granted (above the ceilings): {}",
                        terminal::escape_untrusted(&info.refused_limit_raises.join(", "))
                    );
                }
                if !info.refused_imports.is_empty() {
                    out!("verdict: airlock refuses to load this component");
                }
            }
            Ok(())
        }
        PluginCmd::Run {
            model,
            data: csv,
            bundle,
            label,
            limits,
            seed,
            json,
            host,
        } => plugin_run(
            &host,
            &model,
            &csv,
            bundle.as_deref(),
            label,
            limits.request(),
            seed,
            json,
        ),
        PluginCmd::Validate {
            validator,
            model,
            bundle,
            data: csv,
            label,
            reference,
            step_config,
            limits,
            seed,
            json,
            host,
        } => {
            let config = match &step_config {
                Some(p) => {
                    let text = std::fs::read_to_string(p).map_err(|e| {
                        CliError::input(format!("cannot read {}: {e}", p.display()))
                    })?;
                    toml::from_str::<toml::Table>(&text).map_err(|e| {
                        CliError::input(format!("{}: {}", p.display(), one_line(&e.to_string())))
                    })?
                }
                None => toml::Table::new(),
            };
            if validator.extension().and_then(|e| e.to_str()) != Some("wasm") {
                return Err(CliError::input(format!(
                    "{}: the validator must be a compiled component (a .wasm file); build a crate with `airlock plugin build`",
                    validator.display()
                )));
            }
            let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
            let mut step = toml::Table::new();
            step.insert("name".into(), "validate".into());
            step.insert(
                "plugin".into(),
                abs(&validator).display().to_string().into(),
            );
            step.insert("dataset".into(), abs(&csv).display().to_string().into());
            if let Some(l) = &label {
                step.insert("label".into(), l.clone().into());
            }
            if let Some(r) = &reference {
                step.insert("reference".into(), abs(r).display().to_string().into());
            }
            step.insert(
                "limits".into(),
                toml::Value::try_from(limits.request())
                    .map_err(|e| CliError::input(e.to_string()))?,
            );
            step.insert("config".into(), config.into());
            let mut doc = toml::Table::new();
            doc.insert("name".into(), "plugin-validate".into());
            doc.insert("steps".into(), toml::Value::Array(vec![step.into()]));
            let text = toml::to_string(&doc).map_err(|e| CliError::input(e.to_string()))?;
            let spec = GateSpec::parse(&text, Path::new("."))
                .map_err(|e| CliError::input(format!("plugin validate: {e}")))?;
            run_gate(
                &host,
                &spec,
                &model,
                bundle.as_deref(),
                None,
                None,
                None,
                seed,
                None,
                json,
                StepConfigFrom::Flag(step_config.as_deref()),
            )
        }
    }
}

/// Where a gate's step configuration came from, so that a refused one is
/// reported against what the user wrote.
pub(crate) enum StepConfigFrom<'a> {
    /// The gate file's `[steps.config]` (its line and column).
    GateFile,
    /// `plugin validate --step-config FILE`, or none given; the gate file
    /// behind it is the CLI's own and is never named.
    Flag(Option<&'a Path>),
}

impl StepConfigFrom<'_> {
    fn error(&self, e: airlock_gate::GateError) -> CliError {
        match (self, e) {
            (
                StepConfigFrom::Flag(Some(p)),
                airlock_gate::GateError::StepConfig { message, .. },
            ) => CliError::input(format!(
                "{}: the validator refuses this configuration: {message}",
                p.display()
            )),
            (StepConfigFrom::Flag(None), airlock_gate::GateError::StepConfig { message, .. }) => {
                CliError::input(format!(
                    "the validator needs a configuration and none was given: {message} (pass --step-config FILE, a TOML file holding what a gate step's [steps.config] table would)"
                ))
            }
            (_, e) => CliError::from(e),
        }
    }
}

/// Runs a gate on a candidate (and a baseline), prints the report and, when
/// asked, writes the signed attestation; a refused gate is an error.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_gate(
    global: &Global,
    spec: &GateSpec,
    model: &Path,
    bundle: Option<&Path>,
    baseline: Option<&Path>,
    baseline_bundle: Option<&Path>,
    plugin_dir: Option<PathBuf>,
    seed: Option<u64>,
    signing: Option<(airlock_attest::SigningKey, PathBuf)>,
    json: bool,
    config_from: StepConfigFrom<'_>,
) -> Result<(), CliError> {
    let (sb, data_caps) = sandbox_and_data_caps(global)?;
    for step in &spec.steps {
        warn_raises(
            &format!("step `{}` limits", step.name),
            &sb.config().limits,
            &step.limits,
        );
    }
    let candidate = load_model(&sb, model, bundle)
        .map_err(|e| CliError::input(format!("candidate {}: {e}", model.display())))?;
    let baseline = match baseline {
        Some(b) => Some(
            load_model(&sb, b, baseline_bundle)
                .map_err(|e| CliError::input(format!("baseline {}: {e}", b.display())))?,
        ),
        None => None,
    };
    let no_bundle = candidate.bundle.is_none();
    let report = GateRun {
        sandbox: &sb,
        spec,
        candidate,
        baseline,
        plugin_dir,
        seed,
        data_caps,
    }
    .run()
    .map_err(|e| config_from.error(e))?;
    if json {
        out!("{}", terminal::json(&report));
    } else {
        out_nonl!("{}", report.to_text());
        if no_bundle && report.candidate_failure.is_some() {
            eprintln!("hint: no --bundle was given; a model that reads its data bundle needs one");
        }
    }
    if let Some((key, path)) = signing {
        signing::write_attestation(&report.verdict, &key, &path)?;
        // On stderr, so that `--json` output stays one document.
        eprintln!(
            "attestation: {} (signed by key {})",
            path.display(),
            key.key_id().hex()
        );
    }
    if report.passed {
        Ok(())
    } else {
        Err(CliError::GateRefused)
    }
}

/// Warns on stderr about requested limits above the operator's ceilings,
/// which are not granted (the ceiling applies).
fn warn_raises(what: &str, ceiling: &airlock_core::limits::Limits, req: &LimitRequest) {
    let refused = ceiling.refused_raises(req);
    if !refused.is_empty() {
        eprintln!(
            "warning: {what}: {} above the operator's ceiling; the ceiling applies (see --config)",
            refused.join(", ")
        );
    }
}

#[allow(clippy::too_many_arguments)]
fn plugin_run(
    g: &Global,
    model: &Path,
    csv: &Path,
    bundle: Option<&Path>,
    label: Option<String>,
    limits: LimitRequest,
    seed: u64,
    json: bool,
) -> Result<(), CliError> {
    let (sb, data_caps) = sandbox_and_data_caps(g)?;
    let m = load_model(&sb, model, bundle)
        .map_err(|e| CliError::input(format!("{}: {e}", model.display())))?;
    if m.plugin.world != airlock_core::capabilities::World::Model {
        return Err(CliError::input(format!(
            "{}: expected a model plugin, but this component is a {}",
            model.display(),
            m.plugin.world
        )));
    }
    warn_raises("command-line limits", &sb.config().limits, &limits);
    warn_raises(
        "the plugin's manifest",
        &sb.config().limits,
        &m.plugin.manifest.limits,
    );
    let options = CallOptions {
        limits,
        seed,
        bundle: m.bundle.clone(),
    };
    let hint = |mut f: airlock_core::PluginFailure| {
        if f.kind == airlock_core::FailureKind::Busy {
            return CliError::from(airlock_runtime::SandboxError::Plugin(f));
        }
        if bundle.is_none() && f.kind != airlock_core::FailureKind::InvalidOutput {
            f.message.push_str(
                " (hint: no --bundle was given; a model that reads its data bundle needs one)",
            );
        }
        CliError::Plugin(f)
    };
    let checked = sb.open_model(m.plugin.clone(), options).map_err(hint)?;
    let meta = &checked.metadata;
    let dataset = data::read_csv_with(csv, Some(&meta.inputs), label.as_deref(), &data_caps)
        .map_err(|e| CliError::input(e.to_string()))?;
    let withheld: Vec<&str> = label.as_deref().into_iter().collect();
    let (inputs, matched) = data::model_inputs(&dataset.batch, &meta.inputs, &withheld)
        .map_err(|e| CliError::input(format!("{}: {e}", csv.display())))?;
    if let data::InputMatch::ByPosition { columns } = &matched {
        eprintln!(
            "note: the model declares positional inputs f0..f{}; matched by position to the CSV columns {}",
            meta.inputs.len().saturating_sub(1),
            columns.join(", ")
        );
    }
    let out = checked.predict(&inputs).map_err(hint)?;
    let width = out.value.width.max(1) as usize;
    let rows: Vec<serde_json::Value> = out
        .value
        .values
        .chunks(width)
        .map(|r| {
            if out.value.width == 1 {
                json_num(r[0])
            } else {
                serde_json::Value::Array(r.iter().map(|v| json_num(*v)).collect())
            }
        })
        .collect();
    if json {
        let doc = serde_json::json!({
            "model": {
                "digest": m.plugin.digest,
                "bundle_digest": m.bundle.as_ref().map(|b| b.digest),
                "snapshot_digest": checked.snapshot.as_ref().map(|s| s.digest),
                "contract": m.plugin.contract,
                "name": meta.name,
                "version": meta.version,
            },
            "rows": dataset.batch.rows,
            "predictions": rows,
            "fuel_used": out.fuel_used,
            "duration_us": out.duration.as_secs_f64() * 1e6,
            "metadata_fuel_used": checked.metadata_fuel_used,
            "init_fuel_used": checked.snapshot.as_ref().map(|s| s.init_fuel_used),
        });
        out!("{}", terminal::json(&doc));
    } else {
        out!(
            "# {} {} ({}) on {} rows: fuel {}, {:.3} ms",
            airlock_core::gate::report::escape_untrusted(&meta.name),
            airlock_core::gate::report::escape_untrusted(&meta.version),
            m.plugin.digest,
            dataset.batch.rows,
            out.fuel_used,
            out.duration.as_secs_f64() * 1e3
        );
        for (i, r) in rows.iter().enumerate() {
            out!("{i}\t{r}");
        }
    }
    Ok(())
}

fn json_num(v: f64) -> serde_json::Value {
    serde_json::Number::from_f64(v)
        .map(serde_json::Value::Number)
        .unwrap_or_else(|| serde_json::Value::String(v.to_string()))
}
