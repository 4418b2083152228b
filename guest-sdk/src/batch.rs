//! Typed access to batches and predictions, so plugin code reads columns by
//! name and rows by index instead of matching on WIT variants.

use crate::{Batch, Column, ColumnValues, PluginError, Predictions};

impl Batch {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows as usize
    }

    /// Whether the batch has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The column called `name`, if present.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Column names in batch order.
    pub fn column_names(&self) -> impl Iterator<Item = &str> {
        self.columns.iter().map(|c| c.name.as_str())
    }

    /// The numeric values of column `name` (NaN = missing), or a
    /// `missing-feature` / `bad-input` error naming the column.
    pub fn numeric(&self, name: &str) -> Result<&[f64], PluginError> {
        match self.column(name) {
            Some(c) => c.numeric(),
            None => Err(PluginError::new(
                "missing-feature",
                format!("batch has no column `{name}`"),
            )),
        }
    }

    /// The category values of column `name` (`None` = missing).
    pub fn categorical(&self, name: &str) -> Result<&[Option<String>], PluginError> {
        match self.column(name) {
            Some(c) => c.categorical(),
            None => Err(PluginError::new(
                "missing-feature",
                format!("batch has no column `{name}`"),
            )),
        }
    }

    /// Row-major numeric matrix of the named columns, in the given order.
    pub fn matrix(&self, names: &[&str]) -> Result<Vec<f64>, PluginError> {
        let cols = names
            .iter()
            .map(|n| self.numeric(n))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(row_major(&cols, self.len()))
    }

    /// Row-major numeric matrix of the columns at `positions` (indices into
    /// `columns`, e.g. from matching a model's features), checking that each
    /// is numeric and has one value per row.
    pub fn matrix_at(&self, positions: &[usize]) -> Result<Vec<f64>, PluginError> {
        Ok(row_major(&self.columns_at(positions)?, self.len()))
    }

    /// The numeric columns at `positions` (indices into `columns`), each
    /// checked to be numeric with one value per row: for models that score
    /// column by column instead of copying into a row-major matrix.
    pub fn columns_at(&self, positions: &[usize]) -> Result<Vec<&[f64]>, PluginError> {
        let rows = self.len();
        let mut cols = Vec::with_capacity(positions.len());
        for &p in positions {
            let column = self
                .columns
                .get(p)
                .ok_or_else(|| PluginError::bad_input(format!("no column at position {p}")))?;
            let values = column.numeric()?;
            if values.len() != rows {
                return Err(PluginError::bad_input(format!(
                    "column `{}` has {} values but the batch has {rows} rows",
                    column.name,
                    values.len()
                )));
            }
            cols.push(values);
        }
        Ok(cols)
    }

    /// Row-major numeric matrix of every column, in batch order.
    pub fn matrix_by_position(&self) -> Result<Vec<f64>, PluginError> {
        let cols = self
            .columns
            .iter()
            .map(Column::numeric)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(row_major(&cols, self.len()))
    }

    /// A batch of numeric columns, checking that they have equal lengths.
    pub fn from_numeric(columns: Vec<(String, Vec<f64>)>) -> Result<Batch, PluginError> {
        let rows = columns.first().map(|c| c.1.len()).unwrap_or(0);
        if let Some((name, v)) = columns.iter().find(|c| c.1.len() != rows) {
            return Err(PluginError::bad_input(format!(
                "column `{name}` has {} values, expected {rows}",
                v.len()
            )));
        }
        let rows = u32::try_from(rows)
            .map_err(|_| PluginError::bad_input("batch has more than u32::MAX rows"))?;
        Ok(Batch {
            rows,
            columns: columns
                .into_iter()
                .map(|(name, v)| Column {
                    name,
                    values: ColumnValues::Numeric(v),
                })
                .collect(),
        })
    }

    /// The rows at `indices`, in that order (indices out of range panic).
    pub fn select_rows(&self, indices: &[usize]) -> Batch {
        Batch {
            rows: indices.len() as u32,
            columns: self
                .columns
                .iter()
                .map(|c| Column {
                    name: c.name.clone(),
                    values: match &c.values {
                        ColumnValues::Numeric(v) => {
                            ColumnValues::Numeric(indices.iter().map(|&i| v[i]).collect())
                        }
                        ColumnValues::Categorical(v) => ColumnValues::Categorical(
                            indices.iter().map(|&i| v[i].clone()).collect(),
                        ),
                    },
                })
                .collect(),
        }
    }
}

/// Where each of `wanted` stands in `columns` (by name), or every wanted
/// name that is absent — so a model can say all its missing features at once.
pub fn positions_by_name<W: AsRef<str>, C: AsRef<str>>(
    wanted: &[W],
    columns: &[C],
) -> Result<Vec<usize>, Vec<String>> {
    let mut missing = Vec::new();
    let mut positions = Vec::with_capacity(wanted.len());
    for name in wanted {
        match columns.iter().position(|c| c.as_ref() == name.as_ref()) {
            Some(p) => positions.push(p),
            None => missing.push(name.as_ref().to_string()),
        }
    }
    if missing.is_empty() {
        Ok(positions)
    } else {
        Err(missing)
    }
}

fn row_major(cols: &[&[f64]], rows: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(rows * cols.len());
    for r in 0..rows {
        for c in cols {
            out.push(c[r]);
        }
    }
    out
}

impl Column {
    /// The values if the column is numeric, else a `bad-input` error.
    pub fn numeric(&self) -> Result<&[f64], PluginError> {
        match &self.values {
            ColumnValues::Numeric(v) => Ok(v),
            ColumnValues::Categorical(_) => Err(PluginError::bad_input(format!(
                "column `{}` is categorical, expected numeric",
                self.name
            ))),
        }
    }

    /// The values if the column is categorical, else a `bad-input` error.
    pub fn categorical(&self) -> Result<&[Option<String>], PluginError> {
        match &self.values {
            ColumnValues::Categorical(v) => Ok(v),
            ColumnValues::Numeric(_) => Err(PluginError::bad_input(format!(
                "column `{}` is numeric, expected categorical",
                self.name
            ))),
        }
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        match &self.values {
            ColumnValues::Numeric(v) => v.len(),
            ColumnValues::Categorical(v) => v.len(),
        }
    }

    /// Whether the column has no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Predictions {
    /// One value per row (regression).
    pub fn regression(values: Vec<f64>) -> Self {
        Predictions { width: 1, values }
    }

    /// `width` class probabilities per row, row-major.
    pub fn probabilities(width: u32, values: Vec<f64>) -> Self {
        Predictions { width, values }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        if self.width == 0 {
            0
        } else {
            self.values.len() / self.width as usize
        }
    }

    /// The values of row `i`.
    pub fn row(&self, i: usize) -> &[f64] {
        let w = self.width as usize;
        &self.values[i * w..(i + 1) * w]
    }

    /// The most probable class of row `i` (first on ties); for width 1 the
    /// value itself, rounded, is returned as a class (`>= 0.5` is class 1).
    pub fn predicted_class(&self, i: usize) -> usize {
        let row = self.row(i);
        if row.len() == 1 {
            return usize::from(row[0] >= 0.5);
        }
        let mut best = 0;
        for (k, v) in row.iter().enumerate() {
            if *v > row[best] {
                best = k;
            }
        }
        best
    }

    /// The predicted class of every row, as numbers (comparable to labels).
    pub fn predicted_classes(&self) -> Vec<f64> {
        (0..self.rows())
            .map(|i| self.predicted_class(i) as f64)
            .collect()
    }

    /// The positive-class score of every row: column 1 for width 2, the
    /// value itself for width 1. Wider (multiclass) predictions have no
    /// single positive class, so they are a `bad-input` error naming the
    /// width rather than a silently wrong list of `rows × width` values.
    pub fn positive_scores(&self) -> Result<Vec<f64>, PluginError> {
        match self.width {
            1 => Ok(self.values.clone()),
            2 => Ok(self.values.chunks_exact(2).map(|r| r[1]).collect()),
            w => Err(PluginError::bad_input(format!(
                "positive-class scores need predictions of width 1 or 2, got width {w} (multiclass: pick a class with `column(k)`)"
            ))),
        }
    }

    /// The values of column `k` across rows (e.g. one class's probability).
    pub fn column(&self, k: usize) -> Vec<f64> {
        self.values
            .chunks(self.width.max(1) as usize)
            .map(|r| r[k])
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> Batch {
        Batch::from_numeric(vec![
            ("a".into(), vec![1.0, 2.0, 3.0]),
            ("b".into(), vec![4.0, f64::NAN, 6.0]),
        ])
        .unwrap()
    }

    #[test]
    fn matrix_is_row_major_in_requested_order() {
        let m = batch().matrix(&["b", "a"]).unwrap();
        assert_eq!(m[0], 4.0);
        assert_eq!(m[1], 1.0);
        assert!(m[2].is_nan());
        assert_eq!(m[5], 3.0);
    }

    #[test]
    fn missing_column_is_named() {
        let e = batch().numeric("zzz").unwrap_err();
        assert_eq!(e.code, "missing-feature");
        assert!(e.message.contains("zzz"));
    }

    #[test]
    fn unequal_columns_are_refused() {
        let e =
            Batch::from_numeric(vec![("a".into(), vec![1.0]), ("b".into(), vec![])]).unwrap_err();
        assert!(e.message.contains("`b`"));
    }

    #[test]
    fn matrix_at_checks_kinds_and_lengths() {
        let b = batch();
        assert_eq!(b.matrix_at(&[1, 0]).unwrap()[1], 1.0);
        assert!(
            b.matrix_at(&[5])
                .unwrap_err()
                .message
                .contains("position 5")
        );
        let mut short = b.clone();
        short.columns[0].values = ColumnValues::Numeric(vec![1.0]);
        let e = short.matrix_at(&[0]).unwrap_err();
        assert!(e.message.contains("`a` has 1 values"), "{}", e.message);
    }

    #[test]
    fn positions_by_name_lists_every_missing_name() {
        assert_eq!(
            positions_by_name(&["b", "a"], &["a", "b", "c"]),
            Ok(vec![1, 0])
        );
        assert_eq!(
            positions_by_name(&["x", "a", "y"], &["a"]),
            Err(vec!["x".to_string(), "y".to_string()])
        );
    }

    #[test]
    fn select_rows_reorders() {
        let b = batch().select_rows(&[2, 0]);
        assert_eq!(b.numeric("a").unwrap(), &[3.0, 1.0]);
    }

    #[test]
    fn predicted_classes_take_argmax() {
        let p = Predictions::probabilities(3, vec![0.1, 0.7, 0.2, 0.5, 0.2, 0.3]);
        assert_eq!(p.predicted_classes(), vec![1.0, 0.0]);
        assert_eq!(p.column(2), vec![0.2, 0.3]);
        let b = Predictions::probabilities(2, vec![0.4, 0.6, 0.9, 0.1]);
        assert_eq!(b.positive_scores().unwrap(), vec![0.6, 0.1]);
    }

    #[test]
    fn positive_scores_refuse_multiclass_instead_of_returning_the_whole_matrix() {
        let p = Predictions::probabilities(3, vec![0.1, 0.7, 0.2]);
        let e = p.positive_scores().unwrap_err();
        assert_eq!(e.code, "bad-input");
        assert_eq!(
            e.message,
            "positive-class scores need predictions of width 1 or 2, got width 3 (multiclass: pick a class with `column(k)`)"
        );
        let r = Predictions::regression(vec![0.25, 0.75]);
        assert_eq!(r.positive_scores().unwrap(), vec![0.25, 0.75]);
    }
}
