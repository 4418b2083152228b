//! Checks every value in the committed reference fixtures
//! (`tests/fixtures/stats/*.json`, produced by `tests/fixtures/gen_stats.py`
//! with scikit-learn, scipy and Evidently) against this crate.

use airlock_stats::drift::{self, Column, TestKind};
use airlock_stats::metrics::{self, Average, Probabilities};
use serde_json::Value;

fn load(name: &str) -> Value {
    let path = format!(
        "{}/../../tests/fixtures/stats/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

fn num(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap(),
        Value::String(s) => match s.as_str() {
            "nan" => f64::NAN,
            "inf" => f64::INFINITY,
            "-inf" => f64::NEG_INFINITY,
            other => panic!("unexpected number string {other}"),
        },
        other => panic!("not a number: {other}"),
    }
}

fn nums(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(num).collect()
}

/// Metrics: 1e-9 absolute or relative.
fn assert_metric(case: &str, what: &str, got: f64, want: f64) {
    let ok = (got - want).abs() <= 1e-9 * want.abs().max(1.0);
    assert!(ok, "{case}: {what} = {got:e}, sklearn = {want:e}");
}

/// Drift: 1e-9 relative with a tiny absolute floor near 0.
fn assert_rel(case: &str, what: &str, got: f64, want: f64) {
    if want.is_infinite() {
        assert_eq!(got, want, "{case}: {what}");
        return;
    }
    let ok = (got - want).abs() <= 1e-9 * want.abs() + 1e-14;
    assert!(
        ok,
        "{case}: {what} = {got:e}, reference = {want:e} (rel err {:e})",
        (got - want).abs() / want.abs()
    );
}

#[test]
fn classification_metrics_match_sklearn() {
    let m = load("metrics.json");
    let cases = m["classification"].as_array().unwrap();
    assert!(cases.len() >= 8);
    let mut checked = 0;
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let y = nums(&c["labels"]);
        let p = nums(&c["predicted"]);
        assert_metric(
            name,
            "accuracy",
            metrics::accuracy(&y, &p).unwrap(),
            num(&c["accuracy"]),
        );
        for (avg_name, want) in c["prf"].as_object().unwrap() {
            let avg = match avg_name.as_str() {
                "binary" => Average::Binary,
                "macro" => Average::Macro,
                "weighted" => Average::Weighted,
                "micro" => Average::Micro,
                other => panic!("{other}"),
            };
            let got = metrics::precision_recall_f1(&y, &p, avg).unwrap();
            assert_metric(
                name,
                &format!("{avg_name} precision"),
                got.precision,
                num(&want["precision"]),
            );
            assert_metric(
                name,
                &format!("{avg_name} recall"),
                got.recall,
                num(&want["recall"]),
            );
            assert_metric(name, &format!("{avg_name} f1"), got.f1, num(&want["f1"]));
            checked += 3;
        }
    }
    assert!(checked >= 90, "only {checked} values checked");
}

#[test]
fn roc_auc_binary_matches_sklearn() {
    let m = load("metrics.json");
    for c in m["roc_auc_binary"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        let got = metrics::roc_auc_binary(&nums(&c["labels"]), &nums(&c["scores"])).unwrap();
        assert_metric(name, "roc_auc", got, num(&c["roc_auc"]));
    }
}

#[test]
fn multiclass_probability_metrics_match_sklearn() {
    let m = load("metrics.json");
    for c in m["multiclass_probabilities"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        let y = nums(&c["labels"]);
        let values = nums(&c["probabilities"]);
        let probs = Probabilities::new(c["width"].as_u64().unwrap() as usize, &values).unwrap();
        assert_eq!(probs.argmax(), nums(&c["argmax"]), "{name}: argmax");
        assert_metric(
            name,
            "ovr auc",
            metrics::roc_auc_ovr_macro(&y, &probs).unwrap(),
            num(&c["roc_auc_ovr_macro"]),
        );
        assert_metric(
            name,
            "log_loss",
            metrics::log_loss(&y, &probs).unwrap(),
            num(&c["log_loss"]),
        );
    }
    for c in m["log_loss_binary"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        let got = metrics::log_loss_binary(&nums(&c["labels"]), &nums(&c["p1"])).unwrap();
        assert_metric(name, "binary log_loss", got, num(&c["log_loss"]));
    }
}

#[test]
fn regression_metrics_match_sklearn() {
    let m = load("metrics.json");
    for c in m["regression"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        let t = nums(&c["targets"]);
        let p = nums(&c["predicted"]);
        assert_metric(
            name,
            "rmse",
            metrics::rmse(&t, &p).unwrap(),
            num(&c["rmse"]),
        );
        assert_metric(name, "mae", metrics::mae(&t, &p).unwrap(), num(&c["mae"]));
        assert_metric(name, "r2", metrics::r2(&t, &p).unwrap(), num(&c["r2"]));
    }
}

fn test_kind(name: &str) -> TestKind {
    match name {
        "ks" => TestKind::Ks,
        "chisquare" => TestKind::ChiSquare,
        "z" => TestKind::Z,
        "psi" => TestKind::Psi,
        "jensenshannon" => TestKind::JensenShannon,
        "wasserstein" => TestKind::Wasserstein,
        other => panic!("unknown test {other}"),
    }
}

enum Owned {
    Num(Vec<f64>),
    Cat(Vec<Option<String>>),
}

impl Owned {
    fn parse(kind: &str, v: &Value) -> Owned {
        match kind {
            "numeric" => Owned::Num(nums(v)),
            _ => Owned::Cat(
                v.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_str().map(str::to_owned))
                    .collect(),
            ),
        }
    }
}

fn with_column<R>(o: &Owned, f: impl FnOnce(Column<'_>) -> R) -> R {
    match o {
        Owned::Num(v) => f(Column::Numeric(v)),
        Owned::Cat(v) => {
            let refs: Vec<Option<&str>> = v.iter().map(|x| x.as_deref()).collect();
            f(Column::Categorical(&refs))
        }
    }
}

#[test]
fn drift_tests_match_evidently_and_scipy() {
    let d = load("drift.json");
    let cases = d["tests"].as_array().unwrap();
    assert!(cases.len() >= 40);
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let kind = c["kind"].as_str().unwrap();
        let test = test_kind(c["test"].as_str().unwrap());
        let r = Owned::parse(kind, &c["reference"]);
        let cur = Owned::parse(kind, &c["current"]);
        let res = with_column(&r, |rc| with_column(&cur, |cc| drift::run(test, rc, cc))).unwrap();
        assert_eq!(res.test, test);
        assert_eq!(res.threshold, num(&c["threshold"]), "{name}: threshold");
        assert_rel(name, "score", res.score, num(&c["score"]));
        if let Some(s) = c.get("statistic") {
            assert_rel(name, "statistic", res.statistic.unwrap(), num(s));
        }
        assert_eq!(
            res.drifted,
            c["drifted"].as_bool().unwrap(),
            "{name}: drifted"
        );
        assert_eq!(
            res.p_value.is_some(),
            test.is_p_value(),
            "{name}: p_value presence"
        );
    }
}

#[test]
fn automatic_test_choice_matches_evidently() {
    let d = load("drift.json");
    for c in d["auto"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        let kind = c["kind"].as_str().unwrap();
        let want = test_kind(c["test"].as_str().unwrap());
        let col_kind = if kind == "numeric" {
            drift::ColumnKind::Numeric
        } else {
            drift::ColumnKind::Categorical
        };
        let n_ref = c["n_reference"].as_u64().unwrap() as usize;
        let n_unique = c["n_unique"].as_u64().unwrap() as usize;
        assert_eq!(
            drift::select_test(col_kind, n_ref, n_unique),
            want,
            "{name}: select_test"
        );
        let r = Owned::parse(kind, &c["reference"]);
        let cur = Owned::parse(kind, &c["current"]);
        let res = with_column(&r, |rc| with_column(&cur, |cc| drift::auto(rc, cc))).unwrap();
        assert_eq!(res.test, want, "{name}: auto test");
        assert_eq!(res.threshold, num(&c["threshold"]), "{name}: threshold");
        assert_rel(name, "score", res.score, num(&c["score"]));
        assert_eq!(
            res.drifted,
            c["drifted"].as_bool().unwrap(),
            "{name}: drifted"
        );
    }
}
