//! Reading a model's data bundle: the one read-only directory the host may
//! grant a model plugin, mounted at [`BUNDLE_DIR`]. Nothing else of the host
//! filesystem is visible to a plugin.

use crate::PluginError;

/// Where the host mounts the bundle inside the sandbox.
pub const BUNDLE_DIR: &str = "/bundle";

/// The conventional name of a model's main file inside its bundle.
pub const MODEL_FILE: &str = "model.json";

/// Reads `name` from the bundle; `bad-bundle` error when it cannot.
pub fn read(name: &str) -> Result<Vec<u8>, PluginError> {
    let path = format!("{BUNDLE_DIR}/{name}");
    std::fs::read(&path)
        .map_err(|e| PluginError::new("bad-bundle", format!("cannot read `{path}`: {e}")))
}

/// Reads the model file: [`MODEL_FILE`] when present, otherwise the only
/// regular file in the bundle. A bundle with several files and no
/// `model.json`, or no bundle at all, is a `bad-bundle` error.
pub fn read_model_file() -> Result<Vec<u8>, PluginError> {
    if let Ok(bytes) = std::fs::read(format!("{BUNDLE_DIR}/{MODEL_FILE}")) {
        return Ok(bytes);
    }
    let entries = std::fs::read_dir(BUNDLE_DIR).map_err(|e| {
        PluginError::new(
            "bad-bundle",
            format!("no data bundle is mounted at {BUNDLE_DIR}: {e}"),
        )
    })?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| PluginError::new("bad-bundle", e.to_string()))?;
        if entry.file_type().map(|t| t.is_file()).unwrap_or(false) {
            files.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    match files.as_slice() {
        [one] => read(one),
        [] => Err(PluginError::new(
            "bad-bundle",
            "the data bundle holds no file",
        )),
        many => Err(PluginError::new(
            "bad-bundle",
            format!(
                "the data bundle holds {} files and no `{MODEL_FILE}`: {}",
                many.len(),
                many.join(", ")
            ),
        )),
    }
}
