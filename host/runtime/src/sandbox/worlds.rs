//! The worlds a component may implement, across contract versions.
//!
//! The host links contract 0.1 (frozen) and 0.2 side by side. Everything
//! version-specific about calling a plugin is here, behind one enum per
//! world, so the call path, sessions and candidates never ask which
//! version a plugin was built against. A component's version is decided by
//! wasmtime's own type check of its exports: 0.2 first, then 0.1.

use super::CallState;
use super::bindings::{self, PluginError, v1, v2};
use super::classify::root_message;
use wasmtime::Store;
use wasmtime::component::InstancePre;

/// Which contract version a component was built against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum ContractVersion {
    /// `airlock:plugin@0.1.0` (frozen).
    #[serde(rename = "0.1")]
    V0_1,
    /// `airlock:plugin@0.2.0`.
    #[serde(rename = "0.2")]
    V0_2,
}

impl std::fmt::Display for ContractVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ContractVersion::V0_1 => "0.1",
            ContractVersion::V0_2 => "0.2",
        })
    }
}

/// The contract version a component's `airlock:plugin` imports name: 0.1
/// if any names 0.1, else 0.2 if any names 0.2, else `None`.
pub(super) fn contract_of_imports(imports: &[String]) -> Option<ContractVersion> {
    let versions: Vec<&str> = imports
        .iter()
        .filter(|i| i.starts_with("airlock:plugin/"))
        .filter_map(|i| airlock_core::capabilities::split_version(i).1)
        .collect();
    if versions.iter().any(|v| v.starts_with("0.1.")) {
        Some(ContractVersion::V0_1)
    } else if versions.iter().any(|v| v.starts_with("0.2.")) {
        Some(ContractVersion::V0_2)
    } else {
        None
    }
}

/// A model component linked and type-checked, ready to instantiate.
pub(super) enum ModelPre {
    V1(v1::model::ModelPre<CallState>),
    V2(v2::model::ModelPre<CallState>),
}

/// A live model instance.
pub(crate) enum ModelInstance {
    V1(v1::model::Model),
    V2(v2::model::Model),
}

/// A validator component linked and type-checked, ready to instantiate.
pub(super) enum ValidatorPre {
    V1(v1::validator::ValidatorPre<CallState>),
    V2(v2::validator::ValidatorPre<CallState>),
}

/// A live validator instance.
pub(super) enum ValidatorInstance {
    V1(v1::validator::Validator),
    V2(v2::validator::Validator),
}

impl ModelPre {
    /// Matches `pre` against the model world of 0.2, then of 0.1; the
    /// error names both mismatches.
    pub(super) fn new(pre: InstancePre<CallState>) -> Result<ModelPre, String> {
        let e2 = match v2::model::ModelPre::new(pre.clone()) {
            Ok(p) => return Ok(ModelPre::V2(p)),
            Err(e) => root_message(&e),
        };
        match v1::model::ModelPre::new(pre) {
            Ok(p) => Ok(ModelPre::V1(p)),
            Err(e1) => Err(format!(
                "does not match the model world of contract 0.2 ({e2}) nor of 0.1 ({})",
                root_message(&e1)
            )),
        }
    }

    pub(super) fn version(&self) -> ContractVersion {
        match self {
            ModelPre::V1(_) => ContractVersion::V0_1,
            ModelPre::V2(_) => ContractVersion::V0_2,
        }
    }

    pub(super) fn instantiate(
        &self,
        store: &mut Store<CallState>,
    ) -> wasmtime::Result<ModelInstance> {
        Ok(match self {
            ModelPre::V1(p) => ModelInstance::V1(p.instantiate(store)?),
            ModelPre::V2(p) => ModelInstance::V2(p.instantiate(store)?),
        })
    }
}

impl ModelInstance {
    /// `metadata`; a 0.1 model cannot refuse, so its answer is always `Ok`.
    pub(crate) fn metadata(
        &self,
        store: &mut Store<CallState>,
    ) -> wasmtime::Result<Result<bindings::ModelMetadata, PluginError>> {
        match self {
            ModelInstance::V1(m) => Ok(Ok(m.call_metadata(store)?)),
            ModelInstance::V2(m) => m.call_metadata(store),
        }
    }

    /// `predict`, identical in both versions.
    pub(crate) fn predict(
        &self,
        store: &mut Store<CallState>,
        batch: &bindings::Batch,
    ) -> wasmtime::Result<Result<bindings::Predictions, PluginError>> {
        match self {
            ModelInstance::V1(m) => m.call_predict(store, batch),
            ModelInstance::V2(m) => m.call_predict(store, batch),
        }
    }
}

impl ValidatorPre {
    /// Matches `pre` against the validator world of its contract version.
    /// A validator's exports are the same in 0.1 and 0.2 (what changed is
    /// the `candidate` interface it imports), so its `airlock:plugin`
    /// imports decide; one that imports none behaves the same under both
    /// and counts as 0.2.
    pub(super) fn new(
        pre: InstancePre<CallState>,
        imports: &[String],
    ) -> Result<ValidatorPre, String> {
        if contract_of_imports(imports) == Some(ContractVersion::V0_1) {
            return v1::validator::ValidatorPre::new(pre)
                .map(ValidatorPre::V1)
                .map_err(|e| {
                    format!(
                        "does not match the validator world of contract 0.1: {}",
                        root_message(&e)
                    )
                });
        }
        let e2 = match v2::validator::ValidatorPre::new(pre.clone()) {
            Ok(p) => return Ok(ValidatorPre::V2(p)),
            Err(e) => root_message(&e),
        };
        match v1::validator::ValidatorPre::new(pre) {
            Ok(p) => Ok(ValidatorPre::V1(p)),
            Err(e1) => Err(format!(
                "does not match the validator world of contract 0.2 ({e2}) nor of 0.1 ({})",
                root_message(&e1)
            )),
        }
    }

    pub(super) fn version(&self) -> ContractVersion {
        match self {
            ValidatorPre::V1(_) => ContractVersion::V0_1,
            ValidatorPre::V2(_) => ContractVersion::V0_2,
        }
    }

    pub(super) fn instantiate(
        &self,
        store: &mut Store<CallState>,
    ) -> wasmtime::Result<ValidatorInstance> {
        Ok(match self {
            ValidatorPre::V1(p) => ValidatorInstance::V1(p.instantiate(store)?),
            ValidatorPre::V2(p) => ValidatorInstance::V2(p.instantiate(store)?),
        })
    }
}

impl ValidatorInstance {
    pub(super) fn describe(
        &self,
        store: &mut Store<CallState>,
    ) -> wasmtime::Result<bindings::ValidatorInfo> {
        match self {
            ValidatorInstance::V1(v) => v.call_describe(store),
            ValidatorInstance::V2(v) => v.call_describe(store),
        }
    }

    pub(super) fn validate(
        &self,
        store: &mut Store<CallState>,
        ctx: &bindings::Context,
    ) -> wasmtime::Result<Result<bindings::Verdict, PluginError>> {
        match self {
            ValidatorInstance::V1(v) => v.call_validate(store, ctx),
            ValidatorInstance::V2(v) => v.call_validate(store, ctx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_validators_version_is_the_one_its_airlock_imports_name() {
        let v =
            |i: &[&str]| contract_of_imports(&i.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            v(&["wasi:io/streams@0.2.6", "airlock:plugin/candidate@0.1.0"]),
            Some(ContractVersion::V0_1)
        );
        assert_eq!(
            v(&[
                "airlock:plugin/failures@0.2.0",
                "airlock:plugin/types@0.2.0"
            ]),
            Some(ContractVersion::V0_2)
        );
        // `wasi:` versions never count, and no airlock import is no version.
        assert_eq!(v(&["wasi:cli/stderr@0.2.12"]), None);
        assert_eq!(v(&[]), None);
    }
}
