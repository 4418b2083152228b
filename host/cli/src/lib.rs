//! The `airlock` command line: what plugin authors, operators and reviewers
//! type. Every command has a `--json` form for scripts; errors are one line
//! on stderr; exit codes are decided in one place ([`exit`]).
//!
//! This crate is the only one that knows clap, exit codes and the
//! operator's configuration file ([`config`], which gathers every crate's
//! caps); the library crates below it stay usable from a server.
//!
//! `airlock server` runs the control plane (`server_cmd`), and the client
//! commands (`submit`, `models`, `promote`, ...) talk to one over HTTP
//! (`client`).
#![forbid(unsafe_code)]

mod args;
pub mod config;
pub mod exit;
mod scaffold;

pub use args::Cli;

use airlock_gate::GateSpec;
use airlock_gate::data::DataCaps;
use airlock_runtime::sandbox::Sandbox;
use args::{
    AttestationCmd, AuditCmd, CanaryCmd, Command, GateCmd, Global, KeyCmd, KeysAction, KeysArgs,
    ModelCmd, PolicyCmd, RunCmd, ServingCmd, SubmitCmd, TokenCmd,
};
use clap::Parser;
use client::commands as remote;
use config::HostConfig;
use exit::CliError;
use plugin_cmd::{StepConfigFrom, run_gate};
use std::path::PathBuf;

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

// After the macros, which they use.
mod audit;
mod client;
mod plugin_cmd;
mod server_cmd;
mod signing;
mod terminal;

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

/// The sandbox the command line asks for.
fn sandbox(g: &Global) -> Result<Sandbox, CliError> {
    Ok(sandbox_and_data_caps(g)?.0)
}

/// The sandbox the command line asks for, with the operator's caps on the
/// datasets a command reads (they are not the sandbox's business).
/// The operator's configuration: `--config`, else `$AIRLOCK_CONFIG`, else
/// the embedded defaults.
fn host_config(g: &Global) -> Result<HostConfig, CliError> {
    let path = g
        .config
        .clone()
        .or_else(|| std::env::var_os("AIRLOCK_CONFIG").map(PathBuf::from));
    match path {
        Some(p) => HostConfig::load(&p).map_err(|e| CliError::input(e.to_string())),
        None => Ok(HostConfig::default()),
    }
}

fn sandbox_and_data_caps(g: &Global) -> Result<(Sandbox, DataCaps), CliError> {
    let (cfg, sc) = host_setup(g)?;
    Ok((Sandbox::new(sc).map_err(CliError::from)?, cfg.data))
}

/// The operator's configuration and the sandbox setup it describes, with
/// the command line's cache settings applied.
fn host_setup(
    g: &Global,
) -> Result<(HostConfig, airlock_runtime::sandbox::SandboxConfig), CliError> {
    let cfg = host_config(g)?;
    let mut sc = cfg.sandbox_config();
    sc.cache_dir = if g.no_cache {
        None
    } else {
        g.cache_dir
            .clone()
            .or_else(|| cfg.cache_dir.clone())
            .or_else(default_cache_dir)
    };
    Ok((cfg, sc))
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Audit(AuditCmd::Verify { file, head, json }) => {
            audit::verify(&file, head.as_deref(), json)
        }
        Command::Audit(AuditCmd::Log {
            action,
            actor,
            subject,
            limit,
            oldest_first,
            before,
            after,
            remote,
        }) => remote::audit_log(
            &remote,
            &remote::AuditQuery {
                action,
                actor,
                subject,
                limit,
                oldest_first,
                before,
                after,
            },
        ),
        Command::Server { args: a, host } => {
            let (cfg, sc) = host_setup(&host)?;
            let flags = server_cmd::ServerFlags {
                data_dir: a.data_dir,
                listen: a.listen,
                workers: a.workers,
                queue_depth: a.queue_depth,
                max_upload_bytes: a.max_upload_bytes,
                trust_root: a.trust_root,
                data_keys: a.data_keys,
                tls_cert: a.tls_cert,
                tls_key: a.tls_key,
                rotate_data_keys: a.rotate_data_keys,
                no_monitoring: a.no_monitoring,
                predict_threads: a.predict_threads,
                max_in_flight: a.max_in_flight,
            };
            server_cmd::run(&cfg, sc, &flags)
        }
        Command::Submit(SubmitCmd::Plugin {
            file,
            name,
            version,
            signature,
            remote,
        }) => remote::submit_plugin(&remote, &file, &name, &version, signature.as_deref()),
        Command::Submit(SubmitCmd::Model {
            name,
            version,
            plugin,
            bundle,
            no_bundle,
            bundle_signature,
            training_data,
            code_commit,
            author,
            params,
            labels,
            wait,
            remote,
        }) => remote::submit_model(
            &remote,
            &name,
            &version,
            &plugin,
            bundle.as_deref(),
            no_bundle,
            bundle_signature.as_deref(),
            &remote::Provenance {
                training_data,
                code_commit,
                author,
                params,
                labels,
            },
            wait,
        ),
        Command::Models { remote } => remote::models(&remote),
        Command::Versions { name, remote } => remote::versions(&remote, &name),
        Command::Show { target, remote } => remote::show(&remote, &target),
        Command::Model(ModelCmd::Create {
            name,
            gate,
            approvals,
            description,
            remote,
        }) => remote::model_create(&remote, &name, &gate, approvals, description.as_deref()),
        Command::Gate(GateCmd::Publish {
            gate,
            name,
            version,
            key,
            plugin_dir,
            validators_version,
            remote,
        }) => client::gate_publish::publish(
            &remote,
            &gate,
            &name,
            version,
            &key,
            plugin_dir.as_deref(),
            &validators_version,
        ),
        Command::Gate(GateCmd::Switch {
            name,
            version,
            remote,
        }) => remote::gate_switch(&remote, &name, version),
        Command::Policy(PolicyCmd::Sign {
            policy,
            key,
            output,
        }) => remote::policy_sign(&policy, &key, &output),
        Command::Policy(PolicyCmd::Push { file, remote }) => remote::policy_push(&remote, &file),
        Command::Approve {
            name,
            version,
            comment,
            remote,
        } => remote::approve(&remote, &name, &version, comment.as_deref()),
        Command::Promote {
            name,
            version,
            alias,
            reason,
            remote,
        } => remote::promote(&remote, &name, &version, Some(&alias), reason.as_deref()),
        Command::Rollback {
            name,
            version,
            alias,
            reason,
            remote,
        } => remote::rollback(
            &remote,
            &name,
            version.as_deref(),
            Some(&alias),
            reason.as_deref(),
        ),
        Command::History { name, remote } => remote::history(&remote, &name),
        Command::Canary(CanaryCmd::Start {
            name,
            version,
            reason,
            remote,
        }) => client::serving::canary_start(&remote, &name, &version, reason.as_deref()),
        Command::Canary(CanaryCmd::Resume { name, remote }) => {
            client::serving::canary_command(&remote, &name, None)
        }
        Command::Canary(CanaryCmd::Abort {
            name,
            reason,
            remote,
        }) => client::serving::canary_command(&remote, &name, Some(reason.as_deref())),
        Command::Serving(ServingCmd::Policy { name, file, remote }) => {
            client::serving::set_policy(&remote, &name, &file)
        }
        Command::Serving(ServingCmd::Status { name, remote }) => {
            client::serving::status(&remote, &name)
        }
        Command::Serving(ServingCmd::Shadow {
            name,
            version,
            remote,
        }) => client::serving::shadow(&remote, &name, version.as_deref()),
        Command::Traffic {
            name,
            data,
            label,
            seconds,
            concurrency,
            feedback,
            feedback_token,
            remote,
        } => {
            // Labels go with the labeler's token when one is given, else
            // with the caller's own.
            let labels = match feedback_token {
                Some(token) => Some(args::Remote {
                    token: Some(token),
                    token_file: None,
                    ..remote.clone()
                }),
                None => feedback.then(|| remote.clone()),
            };
            client::serving::traffic(
                &remote,
                &name,
                &data,
                label.as_deref(),
                std::time::Duration::from_secs(seconds),
                concurrency,
                labels.as_ref(),
            )
        }
        Command::Run(RunCmd::Show { id, remote }) => remote::run_show(&remote, &id),
        Command::Run(RunCmd::Wait { id, remote }) => remote::run_wait(&remote, &id),
        Command::Run(RunCmd::Cancel { id, remote }) => remote::run_cancel(&remote, &id),
        Command::Run(RunCmd::Attestation { id, output, remote }) => {
            remote::run_attestation(&remote, &id, &output)
        }
        Command::Token(TokenCmd::Create {
            subject,
            role,
            models,
            aliases,
            ttl,
            remote,
        }) => remote::token_create(&remote, &subject, &role, &models, &aliases, ttl),
        Command::Token(TokenCmd::List { remote }) => remote::token_list(&remote),
        Command::Token(TokenCmd::Rotate { id, remote }) => remote::token_rotate(&remote, &id),
        Command::Token(TokenCmd::Revoke { id, remote }) => remote::token_revoke(&remote, &id),
        Command::Keys(KeysArgs {
            action: Some(KeysAction::Rotate { remote }),
            ..
        }) => remote::keys_rotate(&remote),
        Command::Keys(KeysArgs {
            action: None,
            out,
            remote,
        }) => remote::keys(&remote, out.as_deref()),
        Command::Plugin(cmd) => plugin_cmd::run(cmd),
        Command::Gate(GateCmd::Run {
            gate,
            model,
            bundle,
            baseline,
            baseline_bundle,
            plugin_dir,
            base_dir,
            seed,
            sign_key,
            attestation,
            json,
            host,
        }) => {
            let mut spec = GateSpec::load(&gate).map_err(|e| CliError::input(e.to_string()))?;
            // A bad key is found before the gate runs, not after.
            let signing = match (sign_key, attestation) {
                (Some(k), Some(a)) => Some((signing::load_signing_key(&k)?, a)),
                _ => None,
            };
            if let Some(d) = base_dir {
                spec.base_dir = d;
            }
            run_gate(
                &host,
                &spec,
                &model,
                bundle.as_deref(),
                baseline.as_deref(),
                baseline_bundle.as_deref(),
                plugin_dir,
                seed,
                signing,
                json,
                StepConfigFrom::GateFile,
            )
        }
        Command::Key(KeyCmd::Generate { file, p384 }) => signing::key_generate(&file, p384),
        Command::Sign {
            model,
            key,
            signature,
        } => signing::sign(&model, &key, signature),
        Command::Verify {
            model,
            signature,
            public_key,
            json,
        } => signing::verify(&model, signature, &public_key, json),
        Command::Attestation(AttestationCmd::Verify {
            file,
            public_keys,
            model,
            bundle,
            require_pass,
            json,
            config,
        }) => signing::attestation_verify(
            &host_config(&Global {
                config: config.config,
                ..Global::default()
            })?
            .sandbox_config()
            .bundle_caps,
            &file,
            &public_keys,
            model.as_deref(),
            bundle.as_deref(),
            require_pass,
            json,
        ),
    }
}
