//! Unit tests of reading datasets and cutting model inputs from them.

use super::*;
use airlock_core::types::{Column, ColumnValues, FeatureKind};

fn write(text: &str) -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), text).unwrap();
    f
}

fn num(name: &str) -> Feature {
    Feature {
        name: name.into(),
        kind: FeatureKind::Numeric,
    }
}

fn cat(name: &str) -> Feature {
    Feature {
        name: name.into(),
        kind: FeatureKind::Categorical,
    }
}

fn positional(n: usize) -> Vec<Feature> {
    (0..n).map(|i| num(&format!("f{i}"))).collect()
}

fn names(b: &Batch) -> Vec<&str> {
    b.columns.iter().map(|c| c.name.as_str()).collect()
}

fn err(f: &tempfile::NamedTempFile, caps: &DataCaps) -> String {
    read_csv_with(f.path(), None, None, caps)
        .unwrap_err()
        .to_string()
}

#[test]
fn reads_typed_columns_missing_values_and_labels() {
    let f = write("a,b,group,target\n1,,x,0\n2.5,inf,y,1\n");
    let d = read_csv(f.path(), Some(&[num("a"), num("b")]), Some("target")).unwrap();
    assert_eq!(d.batch.rows, 2);
    assert_eq!(d.labels, Some(vec![0.0, 1.0]));
    assert_eq!(d.lines, vec![2, 3]);
    assert_eq!(d.label.as_deref(), Some("target"));
    let ColumnValues::Numeric(b) = &d.batch.columns[1].values else {
        panic!("b is not numeric")
    };
    assert!(b[0].is_nan() && b[1].is_infinite());
    assert_eq!(
        d.batch.columns[2].values,
        ColumnValues::Categorical(vec![Some("x".into()), Some("y".into())])
    );
    assert_eq!(
        d.digest,
        airlock_core::digest::Digest::of(&std::fs::read(f.path()).unwrap())
    );
}

#[test]
fn errors_name_the_problem() {
    let f = write("a,target\n1,0\nabc,1\n");
    let e = read_csv(f.path(), Some(&[num("a")]), Some("target")).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}: line 3, column `a`: `abc` is not a number",
            f.path().display()
        )
    );
    let e = read_csv(f.path(), None, Some("label")).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("{}: no label column `label`", f.path().display())
    );
    let f = write("a,b\n1,2\n\n\n1\n");
    let e = read_csv(f.path(), None, None).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}: malformed CSV: line 5 has 1 field(s), but the header has 2 columns",
            f.path().display()
        )
    );
    let f = write("a,b\n");
    let e = read_csv(f.path(), None, None).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("{}: no data rows", f.path().display())
    );
}

#[test]
fn a_duplicate_header_names_both_positions() {
    let f = write("a,b,a\n1,2,3\n");
    assert_eq!(
        err(&f, &DataCaps::default()),
        format!(
            "{}: duplicate column `a` (columns 1 and 3 of the header)",
            f.path().display()
        )
    );
}

#[test]
fn an_undeclared_column_switches_to_categorical_and_keeps_the_original_text() {
    // `1.50` and `007` would not survive a round trip through f64: the
    // second pass recovers the cells read before the first non-number.
    let f = write("x,y\n1.50,1\n007,2\n,3\nred,4\n2,5\n");
    let d = read_csv(f.path(), None, None).unwrap();
    assert_eq!(
        d.batch.columns[0].values,
        ColumnValues::Categorical(vec![
            Some("1.50".into()),
            Some("007".into()),
            None,
            Some("red".into()),
            Some("2".into()),
        ])
    );
    assert_eq!(
        d.batch.columns[1].values,
        ColumnValues::Numeric(vec![1.0, 2.0, 3.0, 4.0, 5.0])
    );
}

#[test]
fn a_declared_categorical_column_keeps_numbers_as_text() {
    let f = write("code\n01\n2\n");
    let d = read_csv(f.path(), Some(&[cat("code")]), None).unwrap();
    assert_eq!(
        d.batch.columns[0].values,
        ColumnValues::Categorical(vec![Some("01".into()), Some("2".into())])
    );
}

#[test]
fn each_cap_is_refused_naming_key_limit_and_value() {
    let f = write("a,b,c\n1,2,3\n4,5,6\n7,8,9\n");
    let path = f.path().display().to_string();
    let caps = DataCaps {
        max_file_bytes: 10,
        ..DataCaps::default()
    };
    assert_eq!(
        err(&f, &caps),
        format!(
            "{path}: a file of 24 bytes exceeds data.max_file_bytes = 10 (raise it in the [data] section of the host config to read this file)"
        )
    );
    let caps = DataCaps {
        max_columns: 2,
        ..DataCaps::default()
    };
    assert!(
        err(&f, &caps).starts_with(&format!(
            "{path}: a record with more than 2 columns (at line 1) exceeds data.max_columns = 2 "
        )),
        "{}",
        err(&f, &caps)
    );
    let caps = DataCaps {
        max_rows: 2,
        ..DataCaps::default()
    };
    assert!(
        err(&f, &caps).starts_with(&format!(
            "{path}: more than 2 rows (line 4 is row 3) exceeds data.max_rows = 2 "
        )),
        "{}",
        err(&f, &caps)
    );
    let caps = DataCaps {
        max_cells: 8,
        ..DataCaps::default()
    };
    assert!(
        err(&f, &caps).starts_with(&format!(
            "{path}: 9 cells (3 rows of 3 columns, at line 4) exceeds data.max_cells = 8 "
        )),
        "{}",
        err(&f, &caps)
    );
    // Exactly at every cap is fine.
    let caps = DataCaps {
        max_file_bytes: 24,
        max_columns: 3,
        max_rows: 3,
        max_cells: 9,
    };
    assert_eq!(
        read_csv_with(f.path(), None, None, &caps)
            .unwrap()
            .batch
            .rows,
        3
    );
}

#[test]
fn a_semicolon_or_tab_delimited_file_gets_a_delimiter_hint() {
    let f = write("a;b;target\n1;2;0\n");
    assert_eq!(
        err(&f, &DataCaps::default()),
        format!(
            "{}: the header is a single column containing `;`: the file looks `;`-delimited; airlock reads comma-separated CSV",
            f.path().display()
        )
    );
    let f = write("a\tb\n1\t2\n");
    assert!(
        err(&f, &DataCaps::default()).contains("the file looks `\\t`-delimited"),
        "{}",
        err(&f, &DataCaps::default())
    );
}

#[test]
fn label_errors_name_the_file_line() {
    // The blank line counts: the empty label is on line 4.
    let f = write("a,target\n1,0\n\n2,\n");
    let e = read_csv(f.path(), None, Some("target")).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}: line 4: the label column `target` is empty",
            f.path().display()
        )
    );
    let f = write("a,target\n1,0\n2,NaN\n");
    let e = read_csv(f.path(), None, Some("target")).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}: line 3: label `NaN` in column `target` is not a finite number",
            f.path().display()
        )
    );
}

#[test]
fn check_labels_refuses_a_label_that_is_not_a_class_index() {
    let f = write("a,target\n1,0\n2,1\n3,2\n4,1.5\n");
    let d = read_csv(f.path(), None, Some("target")).unwrap();
    let path = f.path().display();
    assert_eq!(
        d.check_labels(Task::BinaryClassification, 2)
            .unwrap_err()
            .to_string(),
        format!(
            "{path}: line 4: label `2` is not a class index: the model has 2 class(es), so labels must be 0 or 1"
        )
    );
    assert_eq!(
        d.check_labels(Task::MulticlassClassification, 3)
            .unwrap_err()
            .to_string(),
        format!(
            "{path}: line 5: label `1.5` is not a class index: the model has 3 class(es), so labels must be integers 0 to 2"
        )
    );
    d.check_labels(Task::Regression, 0).unwrap();
    let f = write("a,target\n1,-1\n");
    let d = read_csv(f.path(), None, Some("target")).unwrap();
    assert!(
        d.check_labels(Task::MulticlassClassification, 3)
            .unwrap_err()
            .to_string()
            .contains("line 2: label `-1` is not a class index"),
    );
    let f = write("a,target\n1,2\n");
    let d = read_csv(f.path(), None, Some("target")).unwrap();
    d.check_labels(Task::MulticlassClassification, 3).unwrap();
}

#[test]
fn check_labels_refuses_a_non_finite_label_built_by_hand() {
    let f = write("a,target\n1,0\n");
    let mut d = read_csv(f.path(), None, Some("target")).unwrap();
    d.labels = Some(vec![f64::INFINITY]);
    assert_eq!(
        d.check_labels(Task::Regression, 0).unwrap_err().to_string(),
        format!(
            "{}: line 2: label `inf` in column `target` is not a finite number",
            f.path().display()
        )
    );
}

#[test]
fn model_inputs_follow_schema_order() {
    let f = write("b,a,c\n1,2,3\n");
    let d = read_csv(f.path(), None, None).unwrap();
    let (m, how) = model_inputs(&d.batch, &[num("a"), num("b")], &[]).unwrap();
    assert_eq!(names(&m), ["a", "b"]);
    assert_eq!(how, InputMatch::ByName);
}

#[test]
fn a_model_declaring_no_inputs_receives_rows_and_no_columns() {
    let f = write("a,expected\n1,0\n2,1\n");
    let d = read_csv(f.path(), None, None).unwrap();
    let (m, how) = model_inputs(&d.batch, &[], &["expected"]).unwrap();
    assert_eq!(m.rows, 2);
    assert!(m.columns.is_empty());
    assert_eq!(how, InputMatch::ByName);
}

#[test]
fn a_model_declaring_a_withheld_column_is_refused() {
    let f = write("a,target\n1,0\n");
    let d = read_csv(f.path(), None, None).unwrap();
    let e = model_inputs(&d.batch, &[num("a"), num("target")], &["target"]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "the model declares `target` as an input, but `target` is withheld from models (it is a label or an expected output)"
    );
}

#[test]
fn a_model_declaring_an_input_twice_is_refused() {
    let f = write("a\n1\n");
    let d = read_csv(f.path(), None, None).unwrap();
    let e = model_inputs(&d.batch, &[num("a"), num("a")], &[]).unwrap_err();
    assert_eq!(e.to_string(), "the model declares input `a` more than once");
}

#[test]
fn missing_named_columns_are_listed_when_reading_and_when_cutting() {
    let f = write("a,target\n1,0\n");
    let e = read_csv(f.path(), Some(&[num("a"), num("zz")]), None).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}: missing column(s) the model needs: zz",
            f.path().display()
        )
    );
    let d = read_csv(f.path(), None, None).unwrap();
    let e = model_inputs(&d.batch, &[num("a"), num("zz")], &[]).unwrap_err();
    assert_eq!(e.to_string(), "missing column(s) the model needs: zz");
}

#[test]
fn reading_refuses_a_schema_that_declares_the_label() {
    let f = write("a,target\n1,0\n");
    let e = read_csv(f.path(), Some(&[num("a"), num("target")]), Some("target")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "the model declares `target` as an input, but `target` is withheld from models (it is a label or an expected output)"
    );
}

#[test]
fn positional_names_match_by_position_when_the_count_fits() {
    let f = write("x,y,target,z\n1,2,0,3\n4,5,1,6\n");
    let schema = positional(3);
    let d = read_csv(f.path(), Some(&schema), Some("target")).unwrap();
    let (m, how) = model_inputs(&d.batch, &schema, &["target"]).unwrap();
    assert_eq!(
        how,
        InputMatch::ByPosition {
            columns: vec!["x".into(), "y".into(), "z".into()]
        }
    );
    assert_eq!(names(&m), ["f0", "f1", "f2"]);
    assert_eq!(m.columns[2].values, ColumnValues::Numeric(vec![3.0, 6.0]));
}

#[test]
fn positional_names_with_the_wrong_count_say_what_to_do() {
    let f = write("x,y,target\n1,2,0\n");
    let schema = positional(30);
    let want = "missing column(s) the model needs: f0, f1, f2, f3, f4, f5, f6, f7 and 22 more (the model declares positional names f0..f29: give the CSV exactly 30 feature columns besides the label (`target`), or name them f0..f29; this one has 2)";
    let d = read_csv(f.path(), Some(&schema), Some("target")).unwrap();
    let e = model_inputs(&d.batch, &schema, &["target"]).unwrap_err();
    assert_eq!(e.to_string(), want);
    // Some but not all positional names present: a plain missing list.
    let f = write("f0,y,target\n1,2,0\n");
    let e = read_csv(f.path(), Some(&positional(2)), Some("target")).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}: missing column(s) the model needs: f1 (the model declares positional names f0..f1: give the CSV exactly 2 feature columns besides the label (`target`), or name them f0..f1; this one has 2)",
            f.path().display()
        )
    );
}

#[test]
fn positional_matching_never_counts_a_withheld_column() {
    // Three columns besides nothing, but `target` is withheld: two remain,
    // so a three-input positional model is refused rather than fed the label.
    let f = write("x,y,target\n1,2,0\n");
    let d = read_csv(f.path(), None, None).unwrap();
    let e = model_inputs(&d.batch, &positional(3), &["target"]).unwrap_err();
    assert!(e.to_string().contains("this one has 2"), "{e}");
}

#[test]
fn positional_reading_types_columns_by_position_and_names_the_line() {
    let f = write("x,y\n1,2\n3,oops\n");
    let e = read_csv(f.path(), Some(&positional(2)), None).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}: line 3, column `y`: `oops` is not a number",
            f.path().display()
        )
    );
}

#[test]
fn a_categorical_column_for_a_numeric_input_is_refused_by_kind() {
    let batch = Batch {
        rows: 1,
        columns: vec![Column {
            name: "a".into(),
            values: ColumnValues::Categorical(vec![Some("x".into())]),
        }],
    };
    let e = model_inputs(&batch, &[num("a")], &[]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "column `a` holds categorical values but the model declares it numeric"
    );
    let e = model_inputs(&batch, &positional(1), &[]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "column `a` holds categorical values but the model declares it numeric (matched by position to `f0`)"
    );
}

#[test]
fn blank_lines_crlf_and_quoted_newlines_do_not_shift_line_numbers() {
    for (text, want) in [
        ("a\n1\n\n\n2\n", vec![2, 5]),
        ("a\r\n1\r\n\r\n2\r\n", vec![2, 4]),
        ("a\n\"x\ny\"\n2", vec![2, 4]),
        ("a\n1\n2", vec![2, 3]),
    ] {
        let f = write(text);
        let d = read_csv(f.path(), None, None).unwrap();
        assert_eq!(d.lines, want, "{text:?}");
    }
    let f = write("a,target\r\n1,0\r\n\r\n2,x\r\n");
    let e = read_csv(f.path(), None, Some("target")).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}: line 4, column `target`: `x` is not a number",
            f.path().display()
        )
    );
}

#[test]
fn line_numbers_stay_right_across_parser_buffer_boundaries() {
    // Rows of varying length with blank lines, over many 8 KiB buffers.
    let mut text = String::from("a,b\n");
    let mut want = Vec::new();
    let mut line = 2u64;
    for i in 0..20_000u64 {
        if i % 7 == 0 {
            text.push('\n');
            line += 1;
        }
        text.push_str(&format!(
            "{},{}\n",
            i * 31 % 1_000_003,
            "x".repeat((i % 13) as usize)
        ));
        want.push(line);
        line += 1;
    }
    let f = write(&text);
    let d = read_csv(f.path(), None, None).unwrap();
    assert_eq!(d.lines, want);
}

#[test]
fn a_positional_model_fits_once_every_withheld_column_is_removed() {
    // A golden step withholds its expected-output column as well as the
    // label: reading cannot know, so the positional decision is deferred.
    let f = write("x,y,expected,target\n1,2,1,0\n");
    let schema = positional(2);
    let d = read_csv(f.path(), Some(&schema), Some("target")).unwrap();
    let (m, how) = model_inputs(&d.batch, &schema, &["target", "expected"]).unwrap();
    assert_eq!(
        how,
        InputMatch::ByPosition {
            columns: vec!["x".into(), "y".into()]
        }
    );
    assert_eq!(names(&m), ["f0", "f1"]);
}
