//! Operator caps on datasets, checked while a CSV file is read.
//!
//! A dataset is the one input the host parses itself, and it may come from
//! anyone who can name a file (`--data`, a gate file). Each cap is checked
//! before the work it bounds (the file size before the first byte is read,
//! the column count before any row, rows and cells as they arrive), so a
//! hostile file is refused at once instead of after it has filled memory.

use airlock_core::error::ZeroCap;
use serde::{Deserialize, Serialize};

/// Caps on one dataset; the `[data]` section of the host configuration.
///
/// The defaults size a dataset to what a gate can usefully hand a plugin:
/// 50 million cells are 400 MB as `f64`, already far above the default
/// 64 MiB plugin input cap (`limits.max_input_bytes`), so an honest dataset
/// never meets them while a hostile one is stopped long before it can
/// exhaust a build machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataCaps {
    /// Largest CSV file, in bytes (`data.max_file_bytes`); checked with
    /// `stat` before the file is opened for reading. Default 1 GiB.
    pub max_file_bytes: u64,
    /// Most columns in the header (`data.max_columns`); checked before any
    /// row is read. Default 10,000.
    pub max_columns: u32,
    /// Most data rows (`data.max_rows`); at most 2^32 - 1, the most a
    /// batch can carry. Default 10 million.
    pub max_rows: u64,
    /// Most cells, rows times columns, label included (`data.max_cells`).
    /// Default 50 million (400 MB of numbers).
    pub max_cells: u64,
}

impl Default for DataCaps {
    fn default() -> Self {
        DataCaps {
            max_file_bytes: 1 << 30,
            max_columns: 10_000,
            max_rows: 10_000_000,
            max_cells: 50_000_000,
        }
    }
}

/// Why a `[data]` section was refused; the message names the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DataCapsError {
    /// A cap is zero, which would refuse every dataset.
    #[error(transparent)]
    Zero(#[from] ZeroCap),
    /// `max_rows` is above what a batch's 32-bit row count can carry, so
    /// the cap could never be reached before the batch overflowed.
    #[error(
        "data.max_rows {max_rows} exceeds {}, the most rows a batch can carry",
        u32::MAX
    )]
    RowsOverBatch {
        /// The configured value.
        max_rows: u64,
    },
}

impl DataCaps {
    /// Checks the caps themselves: each must be positive, and `max_rows`
    /// must fit the 32-bit row count of a batch. Errors name the key.
    pub fn check(&self) -> Result<(), DataCapsError> {
        for (key, v) in [
            ("data.max_file_bytes", self.max_file_bytes),
            ("data.max_columns", u64::from(self.max_columns)),
            ("data.max_rows", self.max_rows),
            ("data.max_cells", self.max_cells),
        ] {
            if v == 0 {
                return Err(ZeroCap { key }.into());
            }
        }
        if self.max_rows > u64::from(u32::MAX) {
            return Err(DataCapsError::RowsOverBatch {
                max_rows: self.max_rows,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_caps_are_valid() {
        assert_eq!(DataCaps::default().check(), Ok(()));
    }

    #[test]
    fn zero_or_oversized_caps_name_the_key() {
        let zero = DataCaps {
            max_cells: 0,
            ..DataCaps::default()
        };
        let e = zero.check().unwrap_err();
        assert_eq!(
            e,
            DataCapsError::Zero(ZeroCap {
                key: "data.max_cells"
            })
        );
        assert_eq!(e.to_string(), "data.max_cells must be greater than 0");
        let rows = DataCaps {
            max_rows: 1 << 32,
            ..DataCaps::default()
        };
        let e = rows.check().unwrap_err();
        assert_eq!(e, DataCapsError::RowsOverBatch { max_rows: 1 << 32 });
        assert_eq!(
            e.to_string(),
            "data.max_rows 4294967296 exceeds 4294967295, the most rows a batch can carry"
        );
    }
}
