//! A lying model for airlock's test suite.
//!
//! Where `hostile-model` attacks the sandbox, this plugin attacks the
//! *verdict*: it declares one thing and returns another, or tries to read
//! answers it must never see. Its persona comes from `/bundle/liar.txt`, a
//! list of `key = value` lines, so one component plays every role:
//!
//! | key       | values                                                         |
//! |-----------|----------------------------------------------------------------|
//! | `task`    | `regression`, `binary`, `multiclass` (default `binary`)        |
//! | `classes` | comma-separated class labels (default `0,1`)                   |
//! | `inputs`  | comma-separated numeric input names (may be empty)             |
//! | `output`  | what `predict` returns, see below (default `half`)             |
//! | `name`    | the declared model name; `\n` and `\e` in it become a newline |
//! |           | and an escape character (to forge lines in a report)          |
//! | `fail`    | `metadata` or `predict`: that call returns the plugin's own    |
//! |           | error, whose message is `message` (`\n`, `\e` as for `name`)  |
//!
//! `output`:
//! * `half` — behaves: 0.5 for every class of a binary model, 0.5 for
//!   regression, uniform for multiclass;
//! * `nan` — NaN probabilities;
//! * `unnormalized` — binary rows `[1, 1 - 1e-9]`, certain of both classes;
//! * `wide` — one value more per row than the declared classes;
//! * `short` — one value fewer in total than rows × width;
//! * `copy:<column>` — binary: the probability of class 1 is the value of
//!   `<column>` in the batch, clamped to [0, 1] (a label or an expected
//!   output it should never have been given); 0.5 when the column is absent;
//! * `constant-small:<column>` — like `copy:<column>` on batches of at least
//!   100 rows (what the gate scores), but a constant 0.5 on smaller batches
//!   (what a robustness probe sends);
//! * `trap-small`, `spin-small`, `grow-small`, `refuse-small` — behaves
//!   (0.5) on batches of at least 100 rows (what the gate scores), but on
//!   smaller ones (what a validator's probe sends) panics, spins until its
//!   fuel runs out, allocates far past its memory cap, or returns its own
//!   error: the failed probes a validator may swallow;
//! * `bundle-clock` — a time bomb: behaves (0.5) until the modification
//!   time of `/bundle/liar.txt` is past 2026-06-01, then answers 0.9; a
//!   model can tell the date from its bundle only if the host lets real
//!   file times through.

use airlock_guest::{
    Batch, ColumnValues, Feature, FeatureKind, Model, ModelMetadata, OutputSchema, PluginError,
    Predictions, Task,
};

/// The persona read from the bundle.
struct Persona {
    name: String,
    task: Task,
    classes: Vec<String>,
    inputs: Vec<String>,
    output: String,
    fail: String,
    message: String,
}

/// `\n` and `\e` in a persona value become a newline and an escape.
fn unescape(v: &str) -> String {
    v.replace("\\n", "\n").replace("\\e", "\x1b")
}

fn persona() -> Result<Persona, PluginError> {
    let text = std::fs::read_to_string("/bundle/liar.txt")
        .map_err(|e| PluginError::new("no-persona", format!("/bundle/liar.txt: {e}")))?;
    let mut p = Persona {
        name: "liar".into(),
        task: Task::BinaryClassification,
        classes: vec!["0".into(), "1".into()],
        inputs: Vec::new(),
        output: "half".into(),
        fail: String::new(),
        message: String::new(),
    };
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let (k, v) = (k.trim(), v.trim());
        let list = || -> Vec<String> {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        };
        match k {
            "task" => {
                p.task = match v {
                    "regression" => Task::Regression,
                    "multiclass" => Task::MulticlassClassification,
                    _ => Task::BinaryClassification,
                }
            }
            "classes" => p.classes = list(),
            "inputs" => p.inputs = list(),
            "output" => p.output = v.to_string(),
            "name" => p.name = unescape(v),
            "fail" => p.fail = v.to_string(),
            "message" => p.message = unescape(v),
            _ => {}
        }
    }
    if p.task == Task::Regression {
        p.classes.clear();
    }
    Ok(p)
}

fn column(batch: &Batch, name: &str) -> Option<Vec<f64>> {
    batch
        .columns
        .iter()
        .find(|c| c.name == name)
        .and_then(|c| match &c.values {
            ColumnValues::Numeric(v) => Some(v.clone()),
            ColumnValues::Categorical(_) => None,
        })
}

fn binary_from(scores: &[f64]) -> Predictions {
    let mut values = Vec::with_capacity(scores.len() * 2);
    for s in scores {
        let p = s.clamp(0.0, 1.0);
        values.push(1.0 - p);
        values.push(p);
    }
    Predictions { width: 2, values }
}

fn copy(batch: &Batch, name: &str) -> Predictions {
    let rows = batch.rows as usize;
    binary_from(&column(batch, name).unwrap_or_else(|| vec![0.5; rows]))
}

/// The lying model.
struct Liar;

impl Model for Liar {
    fn metadata() -> Result<ModelMetadata, PluginError> {
        let p = persona()?;
        if p.fail == "metadata" {
            return Err(PluginError::new("liar-metadata", p.message));
        }
        Ok(ModelMetadata {
            name: p.name.clone(),
            version: "0.1.0".into(),
            inputs: p
                .inputs
                .iter()
                .map(|n| Feature {
                    name: n.clone(),
                    kind: FeatureKind::Numeric,
                })
                .collect(),
            output: OutputSchema {
                task: p.task,
                classes: p.classes,
            },
        })
    }

    fn predict(batch: Batch) -> Result<Predictions, PluginError> {
        let p = persona()?;
        if p.fail == "predict" {
            return Err(PluginError::new("liar-predict", p.message));
        }
        let rows = batch.rows as usize;
        let width = match p.task {
            Task::Regression => 1,
            _ => p.classes.len().max(1),
        };
        let out = p.output.as_str();
        if rows < 100 {
            match out {
                "trap-small" => panic!("liar: trapping on a probe of {rows} rows"),
                "spin-small" => loop {
                    std::hint::black_box(rows);
                },
                "grow-small" => {
                    let huge = vec![1u8; 1 << 30];
                    std::hint::black_box(&huge);
                }
                "refuse-small" => {
                    return Err(PluginError::new(
                        "too-few-rows",
                        format!("liar refuses a batch of {rows} rows"),
                    ));
                }
                _ => {}
            }
        }
        Ok(match out {
            "nan" => Predictions {
                width: width as u32,
                values: vec![f64::NAN; rows * width],
            },
            "unnormalized" => Predictions {
                width: 2,
                values: [1.0, 1.0 - 1e-9].repeat(rows),
            },
            "wide" => Predictions {
                width: width as u32 + 1,
                values: vec![1.0 / (width + 1) as f64; rows * (width + 1)],
            },
            "short" => Predictions {
                width: width as u32,
                values: vec![1.0 / width as f64; (rows * width).saturating_sub(1)],
            },
            "bundle-clock" => {
                let secs = std::fs::metadata("/bundle/liar.txt")
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0.0, |d| d.as_secs_f64());
                // 2026-06-01T00:00:00Z.
                let p1 = if secs > 1_780_272_000.0 { 0.9 } else { 0.5 };
                binary_from(&vec![p1; rows])
            }
            _ => {
                if let Some(col) = out.strip_prefix("copy:") {
                    copy(&batch, col)
                } else if let Some(col) = out.strip_prefix("constant-small:") {
                    if rows >= 100 {
                        copy(&batch, col)
                    } else {
                        binary_from(&vec![0.5; rows])
                    }
                } else {
                    Predictions {
                        width: width as u32,
                        values: vec![1.0 / width as f64; rows * width],
                    }
                }
            }
        })
    }
}

airlock_guest::export_model!(Liar);
