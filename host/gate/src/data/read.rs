//! The streaming CSV reader behind [`super::read_csv_with`].
//!
//! One pass over the file: the bytes are hashed as the parser consumes them
//! and every cell goes straight into its typed column (no per-cell `String`
//! for numbers, no copy of the file). A column the model does not type
//! starts numeric; if a non-number shows up at row `k`, it becomes
//! categorical from there on, and only if `k > 0` is the file read a second
//! time, up to the last such row, to recover the original text of the
//! earlier cells. The second pass must see the same bytes (same digest and
//! length), so the digest always names exactly what was parsed.

use super::source::{self, Hashing};
use super::{DataCaps, DataError, Dataset};
use airlock_core::digest::Digest;
use airlock_core::inputs::{InputError, missing, positional_names};
use airlock_core::types::{Batch, Column, ColumnValues, Feature, FeatureKind};
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::path::Path;

/// One column being built.
enum Builder {
    /// The label column: numbers, every one present and finite.
    Label(Vec<f64>),
    /// Numbers; `declared` columns refuse a non-number, others switch to
    /// [`Builder::Text`].
    Numeric { values: Vec<f64>, declared: bool },
    /// Original cell text (`None` for an empty cell). Rows before
    /// `from_row` are filled in by the second pass.
    Text {
        values: Vec<Option<String>>,
        from_row: usize,
    },
}

/// The kind the schema gives each header column (`None`: not declared).
/// By name; or, when no declared name is in the header and the schema is
/// positional with exactly as many names as there are non-label columns,
/// by position.
fn declared_kinds(
    headers: &[String],
    schema: Option<&[Feature]>,
    label: Option<usize>,
) -> Vec<Option<FeatureKind>> {
    let Some(schema) = schema else {
        return vec![None; headers.len()];
    };
    let by_name: HashMap<&str, FeatureKind> =
        schema.iter().map(|f| (f.name.as_str(), f.kind)).collect();
    let named: Vec<Option<FeatureKind>> = headers
        .iter()
        .enumerate()
        .map(|(i, h)| {
            if Some(i) == label {
                None
            } else {
                by_name.get(h.as_str()).copied()
            }
        })
        .collect();
    let features = headers.len() - usize::from(label.is_some());
    if named.iter().all(Option::is_none) && positional_names(schema) && features == schema.len() {
        let mut kinds = schema.iter().map(|f| f.kind);
        return (0..headers.len())
            .map(|i| if Some(i) == label { None } else { kinds.next() })
            .collect();
    }
    named
}

fn cell_text(cell: &[u8]) -> Option<&str> {
    std::str::from_utf8(cell).ok()
}

fn number(cell: &[u8]) -> Option<f64> {
    cell_text(cell).and_then(super::parse_number)
}

fn shown(cell: &[u8]) -> String {
    String::from_utf8_lossy(cell).chars().take(40).collect()
}

/// The parser: comma-separated, a header, no trimming (cells are trimmed
/// as they are used, after their line has been worked out).
fn csv_builder() -> csv::ReaderBuilder {
    let mut b = csv::ReaderBuilder::new();
    b.has_headers(true);
    b
}

/// The 1-based file line `record` (just read) starts on. The parser's own
/// position is where the previous record ended, which is wrong after blank
/// lines (the parser skips them as part of the next record), so it is
/// worked out from the end instead: the line after the record, less its
/// `\n` terminator when that was consumed (a CRLF record stops at `\r`),
/// less the newlines inside its quoted fields.
fn record_line(rdr: &csv::Reader<Hashing<&mut File>>, record: &csv::ByteRecord) -> u64 {
    let after = rdr.position();
    let ended_by_lf = after
        .byte()
        .checked_sub(1)
        .and_then(|b| rdr.get_ref().byte_at(b))
        == Some(b'\n');
    let inside = record.as_slice().iter().filter(|&&b| b == b'\n').count() as u64;
    after
        .line()
        .saturating_sub(u64::from(ended_by_lf) + inside)
        .max(1)
}

/// Maps a parser error, telling growth, a record over the column cap and
/// I/O apart from bad CSV.
fn csv_error(
    path: &Path,
    src: &Hashing<&mut File>,
    size: u64,
    caps: &DataCaps,
    e: csv::Error,
) -> DataError {
    if src.grew {
        return DataError::Changed {
            path: path.to_path_buf(),
            message: format!("it grew past the {size} bytes it had when checked"),
        };
    }
    if let Some(line) = src.too_wide {
        return DataError::CapExceeded {
            path: path.to_path_buf(),
            key: "max_columns",
            limit: u64::from(caps.max_columns),
            found: format!(
                "a record with more than {} columns (at line {line})",
                caps.max_columns
            ),
        };
    }
    if !e.is_io_error() {
        return DataError::Malformed {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
    }
    match e.into_kind() {
        csv::ErrorKind::Io(source) => DataError::Io {
            path: path.to_path_buf(),
            source,
        },
        other => DataError::Malformed {
            path: path.to_path_buf(),
            message: format!("{other:?}"),
        },
    }
}

/// Reads the header: UTF-8 names, at most `max_columns`, no other
/// delimiter, no duplicates.
fn headers(
    rdr: &mut csv::Reader<Hashing<&mut File>>,
    path: &Path,
    size: u64,
    caps: &DataCaps,
) -> Result<Vec<String>, DataError> {
    let record = match rdr.byte_headers() {
        Ok(r) => r.clone(),
        Err(e) => return Err(csv_error(path, rdr.get_ref(), size, caps, e)),
    };
    if record.len() > caps.max_columns as usize {
        return Err(DataError::CapExceeded {
            path: path.to_path_buf(),
            key: "max_columns",
            limit: u64::from(caps.max_columns),
            found: format!("a header of {} columns", record.len()),
        });
    }
    let mut names = Vec::with_capacity(record.len());
    for (i, cell) in record.iter().map(<[u8]>::trim_ascii).enumerate() {
        let name = cell_text(cell).ok_or_else(|| DataError::Malformed {
            path: path.to_path_buf(),
            message: format!("column {} of the header is not valid UTF-8", i + 1),
        })?;
        names.push(name.to_string());
    }
    if names.len() == 1 {
        for (c, shown) in [(';', ";"), ('\t', "\\t"), ('|', "|")] {
            if names[0].contains(c) {
                return Err(DataError::Delimiter {
                    path: path.to_path_buf(),
                    delimiter: shown,
                });
            }
        }
    }
    let mut seen: HashMap<&str, usize> = HashMap::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        if let Some(first) = seen.insert(name.as_str(), i) {
            return Err(DataError::DuplicateColumn {
                path: path.to_path_buf(),
                column: name.clone(),
                first: first + 1,
                second: i + 1,
            });
        }
    }
    Ok(names)
}

/// Refuses, before any row is read, a schema that declares the label or
/// names columns the header lacks (unless every declared input was given a
/// column, by name or by position, or the schema is positional and none of
/// its names is in the header: then [`super::model_inputs`] decides).
fn check_schema(
    path: &Path,
    schema: &[Feature],
    headers: &[String],
    label: Option<&str>,
    kinds: &[Option<FeatureKind>],
) -> Result<(), DataError> {
    let mut declared = HashSet::with_capacity(schema.len());
    if let Some(dup) = schema.iter().find(|f| !declared.insert(f.name.as_str())) {
        return Err(InputError::DuplicateInput {
            column: dup.name.clone(),
        }
        .into());
    }
    if let Some(l) = label
        && schema.iter().any(|f| f.name == l)
    {
        return Err(InputError::WithheldInput {
            column: l.to_string(),
        }
        .into());
    }
    let typed = kinds.iter().filter(|k| k.is_some()).count();
    if typed == schema.len() {
        return Ok(());
    }
    let names: HashSet<&str> = headers.iter().map(String::as_str).collect();
    let present: Vec<bool> = schema
        .iter()
        .map(|f| names.contains(f.name.as_str()))
        .collect();
    if positional_names(schema) && !present.contains(&true) {
        // Whether the columns fit by position depends on every withheld
        // column (a golden step's expected output too), which only the
        // caller knows: `model_inputs` decides, and explains.
        return Ok(());
    }
    let withheld: Vec<&str> = label.into_iter().collect();
    let available = headers.len() - withheld.len();
    Err(missing(Some(path), schema, &present, &withheld, available).into())
}

/// See [`super::read_csv_with`].
pub(crate) fn read(
    path: &Path,
    schema: Option<&[Feature]>,
    label: Option<&str>,
    caps: &DataCaps,
) -> Result<Dataset, DataError> {
    let p = || path.to_path_buf();
    let source::Opened { mut file, size } = source::open(path, caps)?;
    let mut rdr =
        csv_builder().from_reader(Hashing::new(&mut file, size, u64::from(caps.max_columns)));
    let headers = headers(&mut rdr, path, size, caps)?;
    if headers.is_empty() {
        return Err(DataError::Empty { path: p() });
    }
    let label_idx =
        match label {
            Some(l) => Some(headers.iter().position(|h| h == l).ok_or_else(|| {
                DataError::MissingLabel {
                    path: p(),
                    column: l.to_string(),
                }
            })?),
            None => None,
        };
    let kinds = declared_kinds(&headers, schema, label_idx);
    if let Some(schema) = schema {
        check_schema(path, schema, &headers, label, &kinds)?;
    }
    let mut builders: Vec<Builder> = kinds
        .into_iter()
        .enumerate()
        .map(|(i, kind)| match kind {
            _ if Some(i) == label_idx => Builder::Label(Vec::new()),
            Some(FeatureKind::Categorical) => Builder::Text {
                values: Vec::new(),
                from_row: 0,
            },
            Some(FeatureKind::Numeric) => Builder::Numeric {
                values: Vec::new(),
                declared: true,
            },
            None => Builder::Numeric {
                values: Vec::new(),
                declared: false,
            },
        })
        .collect();

    let max_rows = caps.max_rows.min(u64::from(u32::MAX));
    let ncols = headers.len() as u64;
    let mut lines: Vec<u64> = Vec::new();
    let mut record = csv::ByteRecord::new();
    loop {
        match rdr.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                // The parser's own message places a short row after blank
                // lines on the wrong line; the record is still at hand.
                if let csv::ErrorKind::UnequalLengths {
                    expected_len, len, ..
                } = e.kind()
                {
                    return Err(DataError::Malformed {
                        path: p(),
                        message: format!(
                            "line {} has {len} field(s), but the header has {expected_len} columns",
                            record_line(&rdr, &record)
                        ),
                    });
                }
                return Err(csv_error(path, rdr.get_ref(), size, caps, e));
            }
        }
        let line = record_line(&rdr, &record);
        let rows = lines.len() as u64 + 1;
        if rows > max_rows {
            return Err(DataError::CapExceeded {
                path: p(),
                key: "max_rows",
                limit: max_rows,
                found: format!("more than {max_rows} rows (line {line} is row {rows})"),
            });
        }
        if rows * ncols > caps.max_cells {
            return Err(DataError::CapExceeded {
                path: p(),
                key: "max_cells",
                limit: caps.max_cells,
                found: format!(
                    "{} cells ({rows} rows of {ncols} columns, at line {line})",
                    rows * ncols
                ),
            });
        }
        let row = lines.len();
        lines.push(line);
        for ((cell, builder), name) in record.iter().zip(&mut builders).zip(&headers) {
            push(builder, cell, row, line, name, path)?;
        }
    }
    if lines.is_empty() {
        return Err(DataError::Empty { path: p() });
    }
    let (hash, read) = rdr
        .into_inner()
        .finish()
        .map_err(|source| DataError::Io { path: p(), source })?;
    if read != size {
        return Err(DataError::Changed {
            path: p(),
            message: format!("it had {size} bytes when checked but {read} when read"),
        });
    }

    let refill = builders
        .iter()
        .filter_map(|b| match b {
            Builder::Text { from_row, .. } if *from_row > 0 => Some(*from_row),
            _ => None,
        })
        .max();
    if let Some(upto) = refill {
        let pass = Pass {
            path,
            size,
            caps,
            hash,
        };
        second_pass(&mut file, &pass, upto, &headers, &mut builders)?;
    }

    let mut labels = None;
    let mut columns = Vec::with_capacity(headers.len());
    for (name, builder) in headers.into_iter().zip(builders) {
        let values = match builder {
            Builder::Label(v) => {
                labels = Some(v);
                continue;
            }
            Builder::Numeric { values, .. } => ColumnValues::Numeric(values),
            Builder::Text { values, .. } => ColumnValues::Categorical(values),
        };
        columns.push(Column { name, values });
    }
    Ok(Dataset {
        path: p(),
        digest: Digest(hash),
        batch: Batch {
            rows: u32::try_from(lines.len()).expect("rows are capped below 2^32"),
            columns,
        },
        labels,
        label: label.map(str::to_string),
        lines,
    })
}

/// Adds one cell to its column.
fn push(
    builder: &mut Builder,
    cell: &[u8],
    row: usize,
    line: u64,
    column: &str,
    path: &Path,
) -> Result<(), DataError> {
    let cell = cell.trim_ascii();
    let not_numeric = || DataError::NotNumeric {
        path: path.to_path_buf(),
        line,
        column: column.to_string(),
        value: shown(cell),
    };
    match builder {
        Builder::Label(values) => {
            if cell.is_empty() {
                return Err(DataError::EmptyLabel {
                    path: path.to_path_buf(),
                    line,
                    column: column.to_string(),
                });
            }
            let v = number(cell).ok_or_else(not_numeric)?;
            if !v.is_finite() {
                return Err(DataError::NonFiniteLabel {
                    path: path.to_path_buf(),
                    line,
                    column: column.to_string(),
                    value: v,
                });
            }
            values.push(v);
        }
        Builder::Numeric { values, declared } => match number(cell) {
            Some(v) => values.push(v),
            None if *declared => return Err(not_numeric()),
            None => {
                let mut text = Vec::new();
                text.resize(row, None);
                *builder = Builder::Text {
                    values: text,
                    from_row: row,
                };
                return push(builder, cell, row, line, column, path);
            }
        },
        Builder::Text { values, .. } => values.push(text_cell(cell, line, column, path)?),
    }
    Ok(())
}

/// A categorical cell: `None` when empty, else its text.
fn text_cell(
    cell: &[u8],
    line: u64,
    column: &str,
    path: &Path,
) -> Result<Option<String>, DataError> {
    if cell.is_empty() {
        return Ok(None);
    }
    cell_text(cell)
        .map(|s| Some(s.to_string()))
        .ok_or_else(|| DataError::NotUtf8 {
            path: path.to_path_buf(),
            line,
            column: column.to_string(),
        })
}

/// What the second pass must match.
struct Pass<'a> {
    path: &'a Path,
    size: u64,
    caps: &'a DataCaps,
    hash: [u8; 32],
}

/// Re-reads rows `0..upto` to recover the text of cells in columns that
/// became categorical after their first row, then checks the file is the
/// one the first pass hashed.
fn second_pass(
    file: &mut File,
    pass: &Pass<'_>,
    upto: usize,
    headers: &[String],
    builders: &mut [Builder],
) -> Result<(), DataError> {
    let Pass {
        path,
        size,
        caps,
        hash,
    } = *pass;
    let changed = || DataError::Changed {
        path: path.to_path_buf(),
        message: "its bytes differ between the two passes over it".to_string(),
    };
    file.seek(SeekFrom::Start(0))
        .map_err(|source| DataError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    let mut rdr = csv_builder().from_reader(Hashing::new(file, size, u64::from(caps.max_columns)));
    let mut record = csv::ByteRecord::new();
    for row in 0..upto {
        match rdr.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => return Err(changed()),
            Err(e) => return Err(csv_error(path, rdr.get_ref(), size, caps, e)),
        }
        let line = record_line(&rdr, &record);
        for ((cell, builder), name) in record.iter().zip(builders.iter_mut()).zip(headers) {
            if let Builder::Text { values, from_row } = builder
                && row < *from_row
            {
                values[row] = text_cell(cell.trim_ascii(), line, name, path)?;
            }
        }
    }
    let (again, read) = rdr.into_inner().finish().map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if again != hash || read != size {
        return Err(changed());
    }
    Ok(())
}
