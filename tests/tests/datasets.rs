//! Datasets are read safely: a path that is not a regular file, a file
//! beyond the operator's caps or a pathological header is refused promptly
//! with an error that names the problem, memory stays near the size of the
//! typed data, and a model trained without feature names reads a named CSV
//! by position without ever seeing the label.

use airlock_gate::data::{self, DataCaps, InputMatch, read_csv, read_csv_with};
use airlock_runtime::sandbox::{Bundle, CallOptions};
use airlock_tests::{fixture, plugin, sandbox};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Runs `read_csv` on another thread and gives up after `limit`, so a read
/// that hangs fails the test instead of hanging the suite.
fn read_within(path: &Path, limit: Duration) -> Result<data::Dataset, data::DataError> {
    let (tx, rx) = mpsc::channel();
    let p = path.to_path_buf();
    std::thread::spawn(move || {
        let _ = tx.send(read_csv(&p, None, None));
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("reading {} did not return within {limit:?}", path.display()))
}

#[test]
fn a_fifo_is_refused_promptly_instead_of_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("data.csv");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    let e = read_within(&fifo, Duration::from_secs(10)).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}: is a FIFO (named pipe), not a regular file; airlock reads datasets from regular files only",
            fifo.display()
        )
    );
}

#[test]
fn dev_zero_is_refused_as_not_a_regular_file() {
    let e = read_within(Path::new("/dev/zero"), Duration::from_secs(10)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "/dev/zero: is a character device, not a regular file; airlock reads datasets from regular files only"
    );
}

#[test]
fn a_directory_is_refused_as_not_a_regular_file() {
    let dir = tempfile::tempdir().unwrap();
    let e = read_within(dir.path(), Duration::from_secs(10)).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}: is a directory, not a regular file; airlock reads datasets from regular files only",
            dir.path().display()
        )
    );
}

#[test]
fn a_sparse_2_gib_file_is_refused_by_size_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.csv");
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(2 << 30).unwrap();
    drop(f);
    let start = Instant::now();
    let e = read_within(&path, Duration::from_secs(10)).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}: a file of 2147483648 bytes exceeds data.max_file_bytes = 1073741824 (raise it in the [data] section of the host config to read this file)",
            path.display()
        )
    );
    // Reading 2 GiB of zeros would take seconds; a stat takes microseconds.
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
}

fn wide_file(dir: &Path, columns: usize, last: &str) -> PathBuf {
    let mut text = String::with_capacity(columns * 8);
    for i in 0..columns {
        text.push_str(&format!("c{i},"));
    }
    text.push_str(last);
    text.push('\n');
    for _ in 0..columns {
        text.push_str("1,");
    }
    text.push_str("1\n");
    write(dir, "wide.csv", &text)
}

#[test]
fn a_header_of_300000_columns_is_refused_before_any_row() {
    let dir = tempfile::tempdir().unwrap();
    let path = wide_file(dir.path(), 299_999, "c299999");
    let start = Instant::now();
    let e = read_csv(&path, None, None).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}: a record with more than 10000 columns (at line 1) exceeds data.max_columns = 10000 (raise it in the [data] section of the host config to read this file)",
            path.display()
        )
    );
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn a_row_of_millions_of_fields_is_refused_before_the_parser_holds_it() {
    // One line of 4 million empty fields: held whole by the parser it would
    // cost 8 bytes per field before any column count could be checked.
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("a,b\n1,2\n");
    text.push_str(&",".repeat(4_000_000));
    text.push('\n');
    let path = write(dir.path(), "commas.csv", &text);
    let e = read_csv(&path, None, None).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}: a record with more than 10000 columns (at line 3) exceeds data.max_columns = 10000 (raise it in the [data] section of the host config to read this file)",
            path.display()
        )
    );
}

#[test]
fn the_duplicate_header_check_is_linear_in_the_column_count() {
    // With the column cap raised, 300,000 distinct names and a repeat of
    // the first at the end: a quadratic scan took 125 s, a hash set takes
    // milliseconds.
    let dir = tempfile::tempdir().unwrap();
    let path = wide_file(dir.path(), 300_000, "c0");
    let caps = DataCaps {
        max_columns: 400_000,
        ..DataCaps::default()
    };
    let start = Instant::now();
    let e = read_csv_with(&path, None, None, &caps).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}: duplicate column `c0` (columns 1 and 300001 of the header)",
            path.display()
        )
    );
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn a_duplicate_header_is_refused_naming_the_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "d.csv", "a,b,target,b\n1,2,0,3\n");
    let e = read_csv(&path, None, Some("target")).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}: duplicate column `b` (columns 2 and 4 of the header)",
            path.display()
        )
    );
}

#[test]
fn a_semicolon_delimited_file_gets_a_delimiter_hint() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "semi.csv",
        "mean_radius;mean_texture;target\n13,8;15,79;0\n",
    );
    let e = read_csv(&path, None, Some("target")).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}: the header is a single column containing `;`: the file looks `;`-delimited; airlock reads comma-separated CSV",
            path.display()
        )
    );
}

#[test]
fn rows_beyond_the_cap_are_refused_at_the_first_extra_row() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rows.csv");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    writeln!(f, "a,b").unwrap();
    for i in 0..5_000 {
        writeln!(f, "{i},{i}").unwrap();
    }
    drop(f);
    let caps = DataCaps {
        max_rows: 1_000,
        ..DataCaps::default()
    };
    let e = read_csv_with(&path, None, None, &caps).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}: more than 1000 rows (line 1002 is row 1001) exceeds data.max_rows = 1000 (raise it in the [data] section of the host config to read this file)",
            path.display()
        )
    );
}

fn expected_rows(name: &str) -> Vec<Vec<f64>> {
    let text = std::fs::read_to_string(fixture(&format!("models/{name}"))).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        })
        .collect()
}

#[test]
fn an_xgboost_model_without_feature_names_reads_named_columns_by_position() {
    let sb = sandbox();
    let p = sb.load_file(&plugin("airlock_model_xgboost")).unwrap();
    let options = CallOptions {
        bundle: Some(
            Bundle::from_path(&fixture("models/xgb_binary_positional_3.2.0.json")).unwrap(),
        ),
        ..CallOptions::default()
    };
    let meta = p.metadata(&options).unwrap().value;
    let declared: Vec<String> = (0..30).map(|i| format!("f{i}")).collect();
    assert_eq!(
        meta.inputs
            .iter()
            .map(|f| f.name.clone())
            .collect::<Vec<_>>(),
        declared
    );
    let csv = fixture("data/breast_cancer_eval.csv");
    let ds = read_csv(&csv, Some(&meta.inputs), Some("target")).unwrap();
    let (batch, how) = data::model_inputs(&ds.batch, &meta.inputs, &["target"]).unwrap();
    let header = std::fs::read_to_string(&csv).unwrap();
    let header: Vec<String> = header
        .lines()
        .next()
        .unwrap()
        .split(',')
        .filter(|h| *h != "target")
        .map(str::to_string)
        .collect();
    assert_eq!(header.len(), 30);
    assert_eq!(how, InputMatch::ByPosition { columns: header });
    let names: Vec<String> = batch.columns.iter().map(|c| c.name.clone()).collect();
    assert_eq!(names, declared);

    let got = p.predict(&options, &batch).unwrap().value;
    let want = expected_rows("expected_xgb_binary_positional_3.2.0_breast_cancer_eval.json");
    assert_eq!(got.width, 2);
    assert_eq!(got.values.len(), want.len() * 2);
    for (i, row) in want.iter().enumerate() {
        for (k, w) in row.iter().enumerate() {
            let g = got.values[i * 2 + k];
            assert!(
                (g - w).abs() <= 1e-5,
                "row {i} class {k}: got {g}, want {w}"
            );
        }
    }
}

#[test]
fn positional_matching_never_feeds_the_label_to_the_model() {
    // Read without a label (as `plugin run` does): 31 columns, one of them
    // the answers. Withheld, `target` is not counted and not passed; not
    // withheld, the count does not fit and the error says what to do.
    let schema: Vec<_> = (0..30)
        .map(|i| airlock_core::types::Feature {
            name: format!("f{i}"),
            kind: airlock_core::types::FeatureKind::Numeric,
        })
        .collect();
    let ds = read_csv(&fixture("data/breast_cancer_eval.csv"), None, None).unwrap();
    let (batch, how) = data::model_inputs(&ds.batch, &schema, &["target"]).unwrap();
    let InputMatch::ByPosition { columns } = how else {
        panic!("expected a positional match")
    };
    assert!(!columns.iter().any(|c| c == "target"));
    assert_eq!(batch.columns.len(), 30);
    let e = data::model_inputs(&ds.batch, &schema, &[]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "missing column(s) the model needs: f0, f1, f2, f3, f4, f5, f6, f7 and 22 more (the model declares positional names f0..f29: give the CSV exactly 30 feature columns in all, or name them f0..f29; this one has 31)"
    );
}

/// Peak resident memory of this process, from /proc (Linux).
fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}

/// The name libtest gives `test`, a test in this module: the module path
/// without the crate's name (`datasets::test` while this file is a module
/// of the one integration-test binary), which `--exact` must match.
fn libtest_name(test: &str) -> String {
    match module_path!().split_once("::") {
        Some((_crate, module)) => format!("{module}::{test}"),
        None => test.to_string(),
    }
}

const MEMORY_CHILD: &str = "AIRLOCK_DATASETS_MEMORY_CHILD";

#[test]
fn reading_numbers_keeps_peak_memory_near_the_typed_size() {
    if let Ok(path) = std::env::var(MEMORY_CHILD) {
        // The child: nothing else runs in this process, so the growth of
        // the peak is what reading cost.
        let caps = DataCaps {
            max_cells: u64::MAX,
            ..DataCaps::default()
        };
        let before = vm_hwm_kib();
        let start = Instant::now();
        let d = read_csv_with(Path::new(&path), None, None, &caps).unwrap();
        let ms = start.elapsed().as_millis();
        let after = vm_hwm_kib();
        println!(
            "AIRLOCK_MEASURE rows={} columns={} before_kib={before} after_kib={after} ms={ms}",
            d.batch.rows,
            d.batch.columns.len()
        );
        return;
    }
    // AIRLOCK_DATASETS_ROWS=2000000 reproduces the figure in the report.
    let rows: usize = std::env::var("AIRLOCK_DATASETS_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    const COLUMNS: usize = 30;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("numbers.csv");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let header: Vec<String> = (0..COLUMNS).map(|j| format!("x{j}")).collect();
    writeln!(f, "{}", header.join(",")).unwrap();
    let mut line = String::new();
    for i in 0..rows {
        line.clear();
        for j in 0..COLUMNS {
            if j > 0 {
                line.push(',');
            }
            line.push_str(&format!("{}.{:03}", i % 997, (i * 7 + j) % 1000));
        }
        writeln!(f, "{line}").unwrap();
    }
    drop(f);
    let file_bytes = std::fs::metadata(&path).unwrap().len();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            &libtest_name("reading_numbers_keeps_peak_memory_near_the_typed_size"),
            "--nocapture",
            "--test-threads=1",
        ])
        .env(MEMORY_CHILD, &path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child failed: {stdout}");
    let line = stdout
        .lines()
        .find_map(|l| l.find("AIRLOCK_MEASURE").map(|at| &l[at..]))
        .unwrap_or_else(|| panic!("no measurement in: {stdout}"));
    let field = |k: &str| -> u64 {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{k}=")))
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(field("rows"), rows as u64);
    let grown = (field("after_kib") - field("before_kib")) * 1024;
    // The typed data: one f64 per cell and one line number per row.
    let typed = (rows * COLUMNS * 8 + rows * 8) as u64;
    eprintln!(
        "{rows} rows x {COLUMNS} columns: file {file_bytes} bytes, typed {typed} bytes, peak grew {grown} bytes, read in {} ms",
        field("ms")
    );
    // Vec doubling can hold up to twice the final size for a moment; the
    // old reader held the file plus one String per cell (over 6x).
    assert!(
        grown < 2 * typed + (16 << 20),
        "peak memory grew {grown} bytes for {typed} bytes of typed data ({file_bytes}-byte file)"
    );
}

#[test]
fn the_memory_child_is_started_with_this_tests_libtest_name() {
    assert_eq!(
        libtest_name("reading_numbers_keeps_peak_memory_near_the_typed_size"),
        "datasets::reading_numbers_keeps_peak_memory_near_the_typed_size"
    );
}
