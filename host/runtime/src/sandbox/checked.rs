//! A model whose every answer is checked against what it declared.
//!
//! [`Plugin::predict`] returns whatever the guest returned. Nothing that a
//! validator, a report or a client sees may come from there directly: it
//! goes through [`CheckedModel`], which fetches the model's metadata once,
//! checks that it is well-formed, and checks every prediction against it
//! (shape, finiteness, probabilities that sum to 1), so a lying model fails
//! as `invalid_output` instead of passing a gate.

use super::{CallOptions, Outcome, Plugin, Sandbox, SnapshotInfo};
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
    /// For a pre-initialised model: the snapshot `plugin` is, and what
    /// building it cost.
    pub snapshot: Option<SnapshotInfo>,
}

impl std::fmt::Debug for CheckedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckedModel")
            .field("digest", &self.plugin.digest)
            .field("metadata", &self.metadata)
            .field("snapshot", &self.snapshot)
            .finish_non_exhaustive()
    }
}

impl Sandbox {
    /// Opens a model for calls: a model that exports `init` is
    /// pre-initialised first (see [`Sandbox::preinitialize`]) and every call
    /// — the gate's, a validator's probes, a client's — runs its snapshot;
    /// then its metadata is fetched and checked.
    pub fn open_model(
        &self,
        plugin: Arc<Plugin>,
        options: CallOptions,
    ) -> Result<CheckedModel, PluginFailure> {
        match self.preinitialize(&plugin, &options)? {
            Some(snapshot) => {
                let mut m = CheckedModel::open_unchecked_source(snapshot.plugin, options).map_err(
                    |mut f| {
                        f.fuel_used += snapshot.info.init_fuel_used;
                        f
                    },
                )?;
                m.snapshot = Some(snapshot.info);
                Ok(m)
            }
            None => CheckedModel::open(plugin, options),
        }
    }
}

impl CheckedModel {
    /// Asks the model for its metadata and checks it. A model whose
    /// metadata is malformed fails as `invalid_output`.
    ///
    /// A model that exports `init` is refused here: it runs from its
    /// snapshot, which [`Sandbox::open_model`] builds.
    pub fn open(plugin: Arc<Plugin>, options: CallOptions) -> Result<CheckedModel, PluginFailure> {
        if plugin.is_preinitializable() {
            return Err(PluginFailure::new(
                FailureKind::InvalidComponent,
                "this model exports `init`: it runs from its snapshot, opened with Sandbox::open_model",
            ));
        }
        Self::open_unchecked_source(plugin, options)
    }

    /// [`CheckedModel::open`] for a plugin already known to be what calls
    /// should run (a snapshot).
    fn open_unchecked_source(
        plugin: Arc<Plugin>,
        options: CallOptions,
    ) -> Result<CheckedModel, PluginFailure> {
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
            snapshot: None,
        })
    }

    /// The digest of the component that was submitted: for a
    /// pre-initialised model, the source of its snapshot (which
    /// [`CheckedModel::snapshot`] names), not the snapshot itself.
    pub fn component_digest(&self) -> airlock_core::digest::Digest {
        self.snapshot
            .as_ref()
            .map_or(self.plugin.digest, |s| s.source_digest)
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
