//! The `airlock` command line: what plugin authors, operators and reviewers
//! type. Every command has a `--json` form for scripts; errors are one line
//! on stderr; exit codes are decided in one place ([`exit`]).

pub mod exit;
mod scaffold;

use crate::config::HostConfig;
use crate::data;
use crate::gate::runner::load_model;
use crate::gate::{GateRun, GateSpec};
use crate::limits::LimitRequest;
use crate::sandbox::{CallOptions, Sandbox};
use clap::{Args, Parser, Subcommand, ValueEnum};
use exit::CliError;
use std::path::{Path, PathBuf};

/// Writes a line to stdout; a closed pipe (`airlock ... | head`) is not an
/// error worth a panic.
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($t)*);
    }};
}

/// Like [`out!`] without the newline.
macro_rules! out_nonl {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout().lock(), $($t)*);
    }};
}

/// Runs untrusted ML plugins in a sandbox and gates deployments on them.
#[derive(Debug, Parser)]
#[command(name = "airlock", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    global: Global,
}

#[derive(Debug, Args)]
struct Global {
    /// Operator configuration (limit ceilings, cache, sandbox); default:
    /// $AIRLOCK_CONFIG if set, else the embedded defaults.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Where compiled components are cached (default: $AIRLOCK_CACHE_DIR, else
    /// $XDG_CACHE_HOME/airlock, else ~/.cache/airlock).
    #[arg(long, global = true)]
    cache_dir: Option<PathBuf>,
    /// Do not cache compiled components on disk.
    #[arg(long, global = true)]
    no_cache: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write, build, inspect and run plugins.
    #[command(subcommand)]
    Plugin(PluginCmd),
    /// Run deployment gates.
    #[command(subcommand)]
    Gate(GateCmd),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Kind {
    Model,
    Validator,
}

#[derive(Debug, Subcommand)]
enum PluginCmd {
    /// Scaffold a guest crate that builds as is.
    New {
        /// `model` or `validator`.
        kind: Kind,
        /// Crate name (also the directory, unless --dir is given).
        name: String,
        /// Where to create the crate.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Path to airlock's guest-sdk crate (default: the one this binary was built from).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Build a guest crate to a component.
    Build {
        /// The crate's directory.
        crate_dir: PathBuf,
        /// Where to write the component.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Show a component's digest, world, imports, exports and capabilities.
    Inspect {
        /// The component.
        file: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run a model on the rows of a CSV file.
    Run {
        /// The model component.
        model: PathBuf,
        /// CSV with a header of feature names; an empty cell is a missing value.
        #[arg(long)]
        data: PathBuf,
        /// The model's data bundle (a file or a directory).
        #[arg(long)]
        bundle: Option<PathBuf>,
        #[command(flatten)]
        limits: LimitArgs,
        /// Seed for the plugin's randomness.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum GateCmd {
    /// Run a gate locally against a candidate model.
    Run {
        /// The gate file.
        gate: PathBuf,
        /// The candidate model component.
        #[arg(long)]
        model: PathBuf,
        /// The candidate's data bundle.
        #[arg(long)]
        bundle: Option<PathBuf>,
        /// The production model to compare against.
        #[arg(long)]
        baseline: Option<PathBuf>,
        /// The baseline's data bundle.
        #[arg(long, requires = "baseline")]
        baseline_bundle: Option<PathBuf>,
        /// Where plugin names in the gate file resolve (overrides plugin_dir).
        #[arg(long)]
        plugin_dir: Option<PathBuf>,
        /// Seed for every plugin (default: derived from the candidate and gate).
        #[arg(long)]
        seed: Option<u64>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Limits a command line may lower.
#[derive(Debug, Args)]
struct LimitArgs {
    /// Fuel per call.
    #[arg(long)]
    fuel: Option<u64>,
    /// Wall-clock deadline per call, in milliseconds.
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// Linear memory cap, in bytes.
    #[arg(long)]
    memory_bytes: Option<u64>,
}

impl LimitArgs {
    fn request(&self) -> LimitRequest {
        LimitRequest {
            fuel: self.fuel,
            timeout_ms: self.timeout_ms,
            memory_bytes: self.memory_bytes,
            ..LimitRequest::default()
        }
    }
}

/// Parses the command line, runs it, and returns the process exit code.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            e.print();
            std::process::ExitCode::from(e.exit_code())
        }
    }
}

fn default_cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("AIRLOCK_CACHE_DIR") {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(d).join("airlock"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("airlock"))
}

fn sandbox(g: &Global) -> Result<Sandbox, CliError> {
    let path = g
        .config
        .clone()
        .or_else(|| std::env::var_os("AIRLOCK_CONFIG").map(PathBuf::from));
    let cfg = match path {
        Some(p) => HostConfig::load(&p).map_err(CliError::input)?,
        None => HostConfig::default(),
    };
    let mut sc = cfg.sandbox_config();
    sc.cache_dir = if g.no_cache {
        None
    } else {
        g.cache_dir
            .clone()
            .or(cfg.cache_dir)
            .or_else(default_cache_dir)
    };
    Sandbox::new(sc).map_err(CliError::from)
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Plugin(PluginCmd::New {
            kind,
            name,
            dir,
            sdk,
        }) => {
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
        Command::Plugin(PluginCmd::Build { crate_dir, output }) => {
            let built = scaffold::build(&crate_dir, output.as_deref())?;
            let sb = sandbox(&cli.global)?;
            let bytes = std::fs::read(&built)
                .map_err(|e| CliError::input(format!("reading {}: {e}", built.display())))?;
            let info = sb.inspect(&bytes).map_err(CliError::from)?;
            if !info.refused_imports.is_empty() {
                return Err(CliError::input(format!(
                    "built {} but airlock would refuse it: imports not granted: {}",
                    built.display(),
                    info.refused_imports.join(", ")
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
        Command::Plugin(PluginCmd::Inspect { file, json }) => {
            let bytes = std::fs::read(&file)
                .map_err(|e| CliError::input(format!("cannot read {}: {e}", file.display())))?;
            let sb = sandbox(&cli.global)?;
            let info = sb.inspect(&bytes).map_err(CliError::from)?;
            if json {
                out!(
                    "{}",
                    serde_json::to_string_pretty(&info).expect("serializable")
                );
            } else {
                out!("file:    {}", file.display());
                out!("digest:  {}", info.digest);
                out!("world:   {}", info.world);
                out!("size:    {} bytes", info.size);
                out!("exports: {}", info.exports.join(", "));
                out!("imports:");
                for i in &info.imports {
                    let refused = info.refused_imports.contains(i);
                    out!("  {}{i}", if refused { "REFUSED " } else { "" });
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
                        info.refused_limit_raises.join(", ")
                    );
                }
                if !info.refused_imports.is_empty() {
                    out!("verdict: airlock refuses to load this component");
                }
            }
            Ok(())
        }
        Command::Plugin(PluginCmd::Run {
            model,
            data: csv,
            bundle,
            limits,
            seed,
            json,
        }) => plugin_run(
            &cli.global,
            &model,
            &csv,
            bundle.as_deref(),
            limits.request(),
            seed,
            json,
        ),
        Command::Gate(GateCmd::Run {
            gate,
            model,
            bundle,
            baseline,
            baseline_bundle,
            plugin_dir,
            seed,
            json,
        }) => {
            let spec = GateSpec::load(&gate).map_err(|e| CliError::input(e.to_string()))?;
            let sb = sandbox(&cli.global)?;
            let candidate = load_model(&sb, &model, bundle.as_deref())
                .map_err(|e| CliError::input(format!("candidate {}: {e}", model.display())))?;
            let baseline = match &baseline {
                Some(b) => Some(
                    load_model(&sb, b, baseline_bundle.as_deref())
                        .map_err(|e| CliError::input(format!("baseline {}: {e}", b.display())))?,
                ),
                None => None,
            };
            let report = GateRun {
                sandbox: &sb,
                spec: &spec,
                candidate,
                baseline,
                plugin_dir,
                seed,
            }
            .run()
            .map_err(CliError::from)?;
            if json {
                out!(
                    "{}",
                    serde_json::to_string_pretty(&report).expect("serializable")
                );
            } else {
                out_nonl!("{}", report.to_text());
            }
            if report.passed {
                Ok(())
            } else {
                Err(CliError::GateRefused)
            }
        }
    }
}

fn plugin_run(
    g: &Global,
    model: &Path,
    csv: &Path,
    bundle: Option<&Path>,
    limits: LimitRequest,
    seed: u64,
    json: bool,
) -> Result<(), CliError> {
    let sb = sandbox(g)?;
    let m = load_model(&sb, model, bundle)
        .map_err(|e| CliError::input(format!("{}: {e}", model.display())))?;
    if m.plugin.world != crate::capabilities::World::Model {
        return Err(CliError::input(format!(
            "{}: expected a model plugin, but this component is a {}",
            model.display(),
            m.plugin.world
        )));
    }
    let options = CallOptions {
        limits,
        seed,
        bundle: m.bundle.clone(),
    };
    let meta = m.plugin.metadata(&options).map_err(CliError::Plugin)?;
    let dataset = data::read_csv(csv, Some(&meta.value.inputs), None)
        .map_err(|e| CliError::input(e.to_string()))?;
    let (inputs, _) = data::model_inputs(&dataset.batch, &meta.value.inputs, &[])
        .map_err(|e| CliError::input(format!("{}: {e}", csv.display())))?;
    let out = m
        .plugin
        .predict(&options, &inputs)
        .map_err(CliError::Plugin)?;
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
                "name": meta.value.name,
                "version": meta.value.version,
            },
            "rows": dataset.batch.rows,
            "predictions": rows,
            "fuel_used": out.fuel_used,
            "duration_us": out.duration.as_secs_f64() * 1e6,
            "metadata_fuel_used": meta.fuel_used,
        });
        out!(
            "{}",
            serde_json::to_string_pretty(&doc).expect("serializable")
        );
    } else {
        out!(
            "# {} {} ({}) on {} rows: fuel {}, {:.3} ms",
            meta.value.name,
            meta.value.version,
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
