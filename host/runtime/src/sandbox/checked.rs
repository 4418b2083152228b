//! A model whose every answer is checked against what it declared.
//!
//! [`Plugin::predict`] returns whatever the guest returned. Nothing that a
//! validator, a report or a client sees may come from there directly: it
//! goes through [`CheckedModel`], which fetches the model's metadata once,
//! checks that it is well-formed, and checks every prediction against it
//! (shape, finiteness, probabilities that sum to 1), so a lying model fails
//! as `invalid_output` instead of passing a gate.

use super::{CallOptions, Outcome, Plugin};
use crate::error::{FailureKind, PluginFailure};
use airlock_core::contract;
use airlock_core::types::{Batch, ModelMetadata, Predictions};
use std::sync::Arc;

/// A model plugin with its checked metadata and the options it runs under.
#[derive(Clone)]
pub struct CheckedModel {
    /// The model component.
    pub plugin: Arc<Plugin>,
    /// Bundle, seed and limits for every call.
    pub options: CallOptions,
    /// The metadata the model declared, already checked.
    pub metadata: ModelMetadata,
    /// Fuel the metadata call used.
    pub metadata_fuel_used: u64,
}

impl CheckedModel {
    /// Asks the model for its metadata and checks it. A model whose
    /// metadata is malformed fails as `invalid_output`.
    pub fn open(plugin: Arc<Plugin>, options: CallOptions) -> Result<CheckedModel, PluginFailure> {
        let out = plugin.metadata(&options)?;
        if let Err(rule) = contract::check_metadata(&out.value) {
            let mut f = PluginFailure::new(
                FailureKind::InvalidOutput,
                format!("the model's metadata is malformed: {rule}"),
            );
            f.fuel_used = out.fuel_used;
            return Err(f);
        }
        Ok(CheckedModel {
            plugin,
            options,
            metadata: out.value,
            metadata_fuel_used: out.fuel_used,
        })
    }

    /// Scores `batch` under the model's own options.
    pub fn predict(&self, batch: &Batch) -> Result<Outcome<Predictions>, PluginFailure> {
        self.predict_with(&self.options, batch)
    }

    /// Scores `batch` under `options` (e.g. tighter limits for a probe),
    /// and checks the result against the declared metadata.
    pub fn predict_with(
        &self,
        options: &CallOptions,
        batch: &Batch,
    ) -> Result<Outcome<Predictions>, PluginFailure> {
        self.predict_within(options, batch, None)
    }

    /// [`CheckedModel::predict_with`] as a validator's candidate call, in
    /// the instance slot the validator holds for it in `reserved`.
    pub(crate) fn predict_within(
        &self,
        options: &CallOptions,
        batch: &Batch,
        reserved: Option<&std::sync::Arc<super::slots::Slots>>,
    ) -> Result<Outcome<Predictions>, PluginFailure> {
        let out = self.plugin.predict_within(options, batch, reserved)?;
        let rules = self.plugin.output_rules();
        if let Err(rule) =
            contract::check_predictions(&self.metadata, batch.rows, &out.value, &rules)
        {
            let mut f = PluginFailure::new(
                FailureKind::InvalidOutput,
                format!("the model's output breaks its declared contract: {rule}"),
            );
            f.fuel_used = out.fuel_used;
            f.stderr = out.stderr;
            return Err(f);
        }
        Ok(out)
    }
}
