//! Serving from the command line: a model's serving policy and status,
//! canaries (start, resume, abort), shadow traffic, and `traffic`, a small
//! load generator that sends one-row predictions from a CSV file (and,
//! with `--feedback` or `--feedback-token`, their labels) and prints, second by second, which
//! version answered and how accurate each was.

use super::{Client, seg};
use crate::args::Remote;
use crate::exit::CliError;
use crate::terminal::escape_untrusted as esc;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn print(remote: &Remote, v: &Value, human: impl FnOnce(&Value)) {
    if remote.json {
        super::commands::print_json(v);
    } else {
        human(v);
    }
}

fn actions(v: &Value) {
    for a in v["actions"].as_array().into_iter().flatten() {
        out!("  {}", a.as_str().unwrap_or_default());
    }
}

/// `airlock canary start NAME VERSION`.
pub(crate) fn canary_start(
    remote: &Remote,
    name: &str,
    version: &str,
    reason: Option<&str>,
) -> Result<(), CliError> {
    let (_, v) = Client::new(remote)?.send_json(
        "POST",
        &format!("/v1/models/{}/canary", seg(name)),
        &json!({ "version": version, "reason": reason.unwrap_or_default() }),
    )?;
    print(remote, &v, |v| {
        out!(
            "canary {} of {} against stable {}{}",
            version,
            name,
            v["stable"].as_str().unwrap_or("-"),
            if v["restarted"] == true {
                " (analysis restarted)"
            } else {
                ""
            }
        );
        actions(v);
    });
    Ok(())
}

/// `airlock canary resume NAME` / `airlock canary abort NAME`.
pub(crate) fn canary_command(
    remote: &Remote,
    name: &str,
    abort: Option<Option<&str>>,
) -> Result<(), CliError> {
    let c = Client::new(remote)?;
    let v = match abort {
        Some(reason) => {
            c.send_json(
                "POST",
                &format!("/v1/models/{}/canary/abort", seg(name)),
                &json!({ "reason": reason.unwrap_or_default() }),
            )?
            .1
        }
        None => c.post_empty(&format!("/v1/models/{}/canary/resume", seg(name)))?,
    };
    print(remote, &v, actions);
    Ok(())
}

/// `airlock serving policy NAME FILE`: sets the serving policy from JSON.
/// The file's bytes are sent as they are, so a line and column in the
/// server's answer point into the file; the answer names the file.
pub(crate) fn set_policy(remote: &Remote, name: &str, file: &Path) -> Result<(), CliError> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| CliError::input(format!("{}: {e}", file.display())))?;
    serde_json::from_str::<Value>(&text)
        .map_err(|e| CliError::input(format!("{}: not JSON: {e}", file.display())))?;
    let (_, v) = Client::new(remote)?
        .send_raw_json("PUT", &format!("/v1/models/{}/serving", seg(name)), text)
        .map_err(|e| match e {
            CliError::Server {
                status: 400,
                code,
                message,
            } => CliError::Server {
                status: 400,
                code,
                message: format!("{}: {message}", file.display()),
            },
            other => other,
        })?;
    print(remote, &v, |v| {
        out!("serving policy of {} set:", esc(name));
        for l in super::human::lines(&v["policy"], 2) {
            out!("{l}");
        }
    });
    Ok(())
}

/// `airlock serving status NAME`: the deployment, the rollout's phase,
/// the shadow comparison with its verdict, and the latest analyses, as
/// text (`--json`: the server's document).
pub(crate) fn status(remote: &Remote, name: &str) -> Result<(), CliError> {
    use super::human::{inline, scalar, tagged};
    let v = Client::new(remote)?.get(&format!("/v1/models/{}/serving", seg(name)), &[])?;
    print(remote, &v, |v| {
        let name = esc(name);
        if v["served"] != true {
            out!("{name} is not served: it has no production version (promote one first)");
            return;
        }
        let d = &v["deployment"];
        out!("{name}");
        out!("  stable:  {}", scalar(&d["stable"]));
        if !d["canary"].is_null() {
            out!(
                "  canary:  {} at {}% of traffic",
                scalar(&d["canary"]),
                scalar(&d["canary_percent"])
            );
        }
        out!("  warm:    {}", inline(&v["warm"]));
        let r = &v["rollout"];
        if !r.is_null() {
            out!(
                "  rollout: {} -> {}, {}, step {} at {}%",
                scalar(&r["stable"]),
                scalar(&r["candidate"]),
                tagged(&r["phase"]),
                scalar(&r["step"]),
                scalar(&r["weight"])
            );
        }
        let sh = &v["shadow"];
        if sh.is_null() {
            out!("  shadow:  none");
        } else {
            let rate = sh["disagreement_rate"]
                .as_f64()
                .map_or("-".to_string(), |r| format!("{:.2}%", 100.0 * r));
            out!(
                "  shadow:  {}: {} compared, {} disagreed ({rate}), mean |difference| {}",
                scalar(&sh["version"]),
                scalar(&sh["compared"]),
                scalar(&sh["disagreed"]),
                sh["mean_abs_difference"]
                    .as_f64()
                    .map_or("-".to_string(), |m| format!("{m:.4}"))
            );
            out!(
                "           verdict: {} ({})",
                scalar(&sh["verdict"]["result"]).to_uppercase(),
                scalar(&sh["verdict"]["reason"])
            );
        }
        let analyses: Vec<&Value> = v["analysis"]
            .as_array()
            .into_iter()
            .flatten()
            .take(10)
            .collect();
        if !analyses.is_empty() {
            out!("  latest analyses (newest first):");
        }
        for r in analyses {
            let actions: Vec<String> = r["actions"]
                .as_array()
                .into_iter()
                .flatten()
                .map(scalar)
                .collect();
            out!(
                "    {} {} {} at {}%: {}{}",
                scalar(&r["at"]),
                scalar(&r["scope"]),
                scalar(&r["version"]),
                scalar(&r["weight"]),
                tagged(&r["measurement"]),
                if actions.is_empty() {
                    String::new()
                } else {
                    format!(" -> {}", actions.join("; "))
                }
            );
            if let (Some(breach), Some(decision)) = (
                r["breach_to_rollback_ms"].as_f64(),
                r["decision_to_switch_ms"].as_f64(),
            ) {
                out!(
                    "      breach window opened -> traffic back on stable: {breach:.0} ms (analysis decision -> switch: {decision:.2} ms)"
                );
            }
        }
    });
    Ok(())
}

/// `airlock serving shadow NAME [VERSION]` (no version: stop shadowing).
pub(crate) fn shadow(remote: &Remote, name: &str, version: Option<&str>) -> Result<(), CliError> {
    let (_, v) = Client::new(remote)?.send_json(
        "PUT",
        &format!("/v1/models/{}/shadow", seg(name)),
        &json!({ "version": version }),
    )?;
    print(remote, &v, |v| {
        out!("{name}: shadow {}", v["shadow"].as_str().unwrap_or("off"));
    });
    Ok(())
}

/// A CSV's rows as feature objects, with the label column split off.
fn read_rows(data: &Path, label: Option<&str>) -> Result<Vec<(Value, Option<f64>)>, CliError> {
    let text = std::fs::read_to_string(data)
        .map_err(|e| CliError::input(format!("{}: {e}", data.display())))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .ok_or_else(|| CliError::input(format!("{}: empty", data.display())))?
        .split(',')
        .map(str::trim)
        .collect();
    if let Some(l) = label
        && !header.contains(&l)
    {
        return Err(CliError::input(format!(
            "{}: no label column `{l}`",
            data.display()
        )));
    }
    let mut rows = Vec::new();
    for (i, line) in lines.enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        if cells.len() != header.len() {
            return Err(CliError::input(format!(
                "{} line {}: {} cells, the header has {}",
                data.display(),
                i + 2,
                cells.len(),
                header.len()
            )));
        }
        let mut row = serde_json::Map::new();
        let mut y = None;
        for (h, c) in header.iter().zip(cells) {
            let value = match c.parse::<f64>() {
                Ok(x) if x.is_finite() => json!(x),
                _ if c.is_empty() => Value::Null,
                _ => json!(c),
            };
            if Some(*h) == label {
                y = value.as_f64();
            } else {
                row.insert(h.to_string(), value);
            }
        }
        rows.push((Value::Object(row), y));
    }
    if rows.is_empty() {
        return Err(CliError::input(format!("{}: no rows", data.display())));
    }
    Ok(rows)
}

#[derive(Default)]
struct Second {
    by_version: BTreeMap<String, (u64, u64, u64)>,
    errors: u64,
}

/// `airlock traffic NAME --data CSV`: one-row predictions for `duration`
/// from `concurrency` threads, labels sent back through `feedback` (the
/// labeler's connection) when given; prints each second's split by version
/// (with each version's accuracy against the labels) and a summary with
/// latency percentiles. A refused label is counted and reported, not
/// dropped quietly.
pub(crate) fn traffic(
    remote: &Remote,
    name: &str,
    data: &Path,
    label: Option<&str>,
    duration: Duration,
    concurrency: usize,
    feedback: Option<&Remote>,
) -> Result<(), CliError> {
    let rows = read_rows(data, label)?;
    let client = Arc::new(Client::new(remote)?);
    check_columns(&client, name, data, &rows)?;
    let rows = Arc::new(rows);
    // The first client error (4xx: the request itself is wrong, so every
    // other would be refused alike) stops every thread.
    let client_error: Arc<Mutex<Option<CliError>>> = Arc::new(Mutex::new(None));
    let labeler = match feedback {
        Some(r) => Some(Arc::new(Client::new(r)?)),
        None => None,
    };
    let label_failures = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let seconds: Arc<Mutex<BTreeMap<u64, Second>>> = Arc::new(Mutex::new(BTreeMap::new()));
    let latencies: Arc<Mutex<Vec<f64>>> = Arc::new(Mutex::new(Vec::new()));
    let errors: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let path = format!("/v1/models/{}/predict", seg(name));
    let feedback_path = format!("/v1/models/{}/feedback", seg(name));
    let mut threads = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (labeler, label_failures) = (labeler.clone(), label_failures.clone());
        let client_error = client_error.clone();
        let (client, rows, seconds, latencies, errors, next) = (
            client.clone(),
            rows.clone(),
            seconds.clone(),
            latencies.clone(),
            errors.clone(),
            next.clone(),
        );
        let (path, feedback_path) = (path.clone(), feedback_path.clone());
        threads.push(std::thread::spawn(move || {
            while started.elapsed() < duration
                && client_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .is_none()
            {
                let (row, y) = &rows[next.fetch_add(1, Ordering::Relaxed) % rows.len()];
                let t0 = Instant::now();
                let sent = client.send_json("POST", &path, &json!({ "rows": [row] }));
                let took = t0.elapsed().as_secs_f64() * 1e3;
                let second = started.elapsed().as_secs() + 1;
                match sent {
                    Ok((_, v)) => {
                        latencies
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(took);
                        let version = v["version"].as_str().unwrap_or("?").to_string();
                        let scores: Vec<f64> = v["predictions"][0]
                            .as_array()
                            .map(|a| a.iter().filter_map(Value::as_f64).collect())
                            .unwrap_or_default();
                        let predicted = scores
                            .iter()
                            .enumerate()
                            .fold((0usize, f64::NEG_INFINITY), |b, (i, s)| {
                                if *s > b.1 { (i, *s) } else { b }
                            })
                            .0 as f64;
                        let (labelled, correct) = match y {
                            Some(y) => (1, u64::from(predicted == *y)),
                            None => (0, 0),
                        };
                        {
                            let mut s = seconds.lock().unwrap_or_else(|p| p.into_inner());
                            let e = s
                                .entry(second)
                                .or_default()
                                .by_version
                                .entry(version)
                                .or_default();
                            e.0 += 1;
                            e.1 += labelled;
                            e.2 += correct;
                        }
                        if let (Some(labeler), Some(y), Some(id)) =
                            (&labeler, y, v["request_id"].as_str())
                            && let Err(e) = labeler.send_json(
                                "POST",
                                &feedback_path,
                                &json!({ "request_id": id, "label": y }),
                            )
                            && label_failures.fetch_add(1, Ordering::Relaxed) == 0
                        {
                            let mut errs = errors.lock().unwrap_or_else(|p| p.into_inner());
                            errs.push(format!("label refused: {}", error_text(&e)));
                        }
                    }
                    Err(e) if is_client_error(&e) => {
                        let mut first = client_error.lock().unwrap_or_else(|p| p.into_inner());
                        if first.is_none() {
                            *first = Some(e);
                        }
                    }
                    Err(e) => {
                        seconds
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .entry(second)
                            .or_default()
                            .errors += 1;
                        let mut errs = errors.lock().unwrap_or_else(|p| p.into_inner());
                        if errs.len() < 5 {
                            errs.push(error_text(&e));
                        }
                    }
                }
            }
        }));
    }
    // Print each second once it is over.
    let printer = {
        let (seconds, done) = (seconds.clone(), done.clone());
        let json = remote.json;
        std::thread::spawn(move || {
            let mut printed = 0u64;
            loop {
                let finished = done.load(Ordering::Acquire);
                let now = started.elapsed().as_secs();
                let s = seconds.lock().unwrap_or_else(|p| p.into_inner());
                let upto = if finished { u64::MAX } else { now };
                let ready: Vec<(&u64, &Second)> = if upto > printed {
                    s.range(printed + 1..=upto).collect()
                } else {
                    Vec::new()
                };
                for (sec, row) in ready {
                    printed = *sec;
                    if json {
                        continue;
                    }
                    let total: u64 = row.by_version.values().map(|v| v.0).sum();
                    let parts: Vec<String> = row
                        .by_version
                        .iter()
                        .map(|(v, (n, l, c))| {
                            let acc = if *l > 0 {
                                format!(", accuracy {:.0}%", 100.0 * *c as f64 / *l as f64)
                            } else {
                                String::new()
                            };
                            format!("{v} {:.0}%{acc}", 100.0 * *n as f64 / total.max(1) as f64)
                        })
                        .collect();
                    out!(
                        "  t={sec:>3}s  {total:>5} req  {}{}",
                        parts.join("  |  "),
                        if row.errors > 0 {
                            format!("  ({} errors)", row.errors)
                        } else {
                            String::new()
                        }
                    );
                }
                drop(s);
                if finished {
                    return;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    for t in threads {
        let _ = t.join();
    }
    done.store(true, Ordering::Release);
    let _ = printer.join();
    let mut lat = latencies.lock().unwrap_or_else(|p| p.into_inner()).clone();
    lat.sort_by(f64::total_cmp);
    if let Some(e) = client_error
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
    {
        return Err(CliError::input(format!(
            "traffic stopped at the first refused request (after {} answers): {}",
            latencies.lock().unwrap_or_else(|p| p.into_inner()).len(),
            error_text(&e)
        )));
    }
    let pct = |q: f64| {
        lat.get(((q * lat.len() as f64).ceil() as usize).saturating_sub(1))
            .copied()
    };
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2} ms"));
    let s = seconds.lock().unwrap_or_else(|p| p.into_inner());
    let mut totals: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    let mut n_err = 0;
    for row in s.values() {
        n_err += row.errors;
        for (v, (n, l, c)) in &row.by_version {
            let t = totals.entry(v.clone()).or_default();
            t.0 += n;
            t.1 += l;
            t.2 += c;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let summary = json!({
        "requests": lat.len(), "errors": n_err, "seconds": elapsed,
        "labels_refused": label_failures.load(Ordering::Relaxed),
        "requests_per_second": lat.len() as f64 / elapsed,
        "latency_ms": { "p50": pct(0.5), "p99": pct(0.99), "max": lat.last() },
        "versions": totals.iter().map(|(v, (n, l, c))| (v.clone(), json!({ "requests": n, "labelled": l, "correct": c }))).collect::<serde_json::Map<_, _>>(),
        "first_errors": *errors.lock().unwrap_or_else(|p| p.into_inner()),
    });
    print(remote, &summary, |_| {
        out!(
            "{} requests in {:.1} s ({:.0}/s, {} concurrent), {} errors; latency p50 {}, p99 {} (client side, over HTTP)",
            lat.len(),
            elapsed,
            lat.len() as f64 / elapsed,
            concurrency,
            n_err,
            ms(pct(0.5)),
            ms(pct(0.99))
        );
        for (v, (n, l, c)) in &totals {
            let acc = if *l > 0 {
                format!(
                    ", accuracy {:.1}% on {l} labels",
                    100.0 * *c as f64 / *l as f64
                )
            } else {
                String::new()
            };
            out!("  version {v}: {n} answers{acc}");
        }
        let refused = label_failures.load(Ordering::Relaxed);
        if refused > 0 {
            out!("  {refused} labels were refused");
        }
        for e in errors.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            out!("  error: {e}");
        }
    });
    if lat.is_empty() && n_err > 0 {
        return Err(CliError::input(format!(
            "all {n_err} requests to {} failed; the first: {}",
            esc(name),
            errors
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .first()
                .cloned()
                .unwrap_or_default()
        )));
    }
    Ok(())
}

/// An error as one escaped line, as every command prints it.
fn error_text(e: &CliError) -> String {
    e.line()
        .map(|l| l.trim_start_matches("error: ").to_string())
        .unwrap_or_else(|| "the run did not pass".into())
}

/// A 4xx other than 429: the request itself is wrong and every other one
/// would be refused alike.
fn is_client_error(e: &CliError) -> bool {
    matches!(e, CliError::Server { status, .. } if (400..500).contains(status) && *status != 429)
}

/// Checks the CSV against the served model's inputs before anything is
/// sent: a column the model reads and the file lacks is named here, not
/// in thousands of refused requests.
fn check_columns(
    client: &Client,
    name: &str,
    data: &Path,
    rows: &[(Value, Option<f64>)],
) -> Result<(), CliError> {
    let meta = client.get(&format!("/v2/models/{}", seg(name)), &[])?;
    let Some(features) = meta["parameters"]["features"].as_array() else {
        return Ok(());
    };
    let Some((first, _)) = rows.first() else {
        return Ok(());
    };
    let missing: Vec<String> = features
        .iter()
        .filter_map(Value::as_str)
        .filter(|f| first.get(*f).is_none())
        .map(|f| format!("`{}`", esc(f)))
        .collect();
    if !missing.is_empty() {
        return Err(CliError::input(format!(
            "{}: no column {} that model {} reads (nothing was sent)",
            data.display(),
            missing.join(", "),
            esc(name)
        )));
    }
    Ok(())
}
