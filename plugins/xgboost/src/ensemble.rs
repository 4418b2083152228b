//! A pure-Rust evaluator for XGBoost's JSON model format.
//!
//! Why it exists: airlock never lets the host parse an untrusted model file, so
//! the model plugin has to read the bundle itself inside the sandbox. This
//! module does exactly that, with no I/O: bytes in, an [`Ensemble`] out, and
//! rows in, predictions out.
//!
//! Bundles are hostile input. Parsing validates every tree (array lengths,
//! child indices, reachability from the root) so that a crafted file can make
//! [`Ensemble::from_json`] fail with a [`ModelError`], but never make
//! [`Ensemble::predict`] panic, index out of bounds or loop forever.
//!
//! Numerics follow XGBoost's CPU predictor: features are cast to `f32`, a
//! split sends a row left when `x < split_condition` and to the split's default
//! child when `x` is missing (NaN), leaf values are added to the base margin in
//! tree order in `f32`, and the output transform (sigmoid or softmax) runs in
//! `f32`. That keeps predictions within about 1e-6 of XGBoost's own.
#![forbid(unsafe_code)]

use crate::dense::{BLOCK, Dense, PASS_SLOT, SLOTS};
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// Why a model could not be loaded or evaluated.
///
/// Every variant names what is wrong and where, so that a plugin author (or a
/// security reviewer looking at a rejected bundle) can see the cause at once.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ModelError {
    /// The bytes are not JSON, or a field has the wrong JSON type.
    #[error("malformed XGBoost JSON model: {0}")]
    Malformed(String),
    /// A field the evaluator needs is absent.
    #[error("XGBoost model is missing the field `{0}`")]
    MissingField(String),
    /// A field is present but its value makes no sense.
    #[error("XGBoost model field `{field}` is invalid: {reason}")]
    InvalidField {
        /// Dotted path of the field.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A tree's per-node arrays disagree in length.
    #[error("tree {tree}: `{field}` has {found} entries but the tree has {expected} nodes")]
    LengthMismatch {
        /// Index of the tree in the model.
        tree: usize,
        /// The array whose length is wrong.
        field: &'static str,
        /// Number of nodes the tree declares (length of `left_children`).
        expected: usize,
        /// Length found.
        found: usize,
    },
    /// A tree is not a well-formed binary tree rooted at node 0.
    #[error("tree {tree}, node {node}: {reason}")]
    BadTree {
        /// Index of the tree in the model.
        tree: usize,
        /// The offending node.
        node: usize,
        /// What is wrong (child out of range, cycle, ...).
        reason: String,
    },
    /// The objective is one this evaluator cannot reproduce.
    #[error(
        "unsupported XGBoost objective `{0}` (supported: binary:logistic, binary:logitraw, \
         reg:logistic, reg:squarederror, reg:linear, multi:softprob, multi:softmax)"
    )]
    UnsupportedObjective(String),
    /// A model feature this evaluator does not implement (categorical splits,
    /// vector leaves, non-tree boosters).
    #[error("unsupported XGBoost model feature: {0}")]
    Unsupported(String),
    /// The input rows do not fit the model.
    #[error("bad input: {0}")]
    BadInput(String),
    /// Named columns do not cover the model's features.
    #[error("input is missing model feature(s): {}", .0.join(", "))]
    MissingFeatures(Vec<String>),
}

/// What kind of output the model produces, which decides the prediction width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// One number per row.
    Regression,
    /// Two probabilities per row: `[1 - p, p]`.
    BinaryClassification,
    /// One probability per class per row.
    MulticlassClassification,
}

/// How raw margins become predictions; decided by the model's objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// Margin is the prediction (`reg:squarederror`).
    Identity,
    /// Sigmoid of the margin, one output (`reg:logistic`).
    SigmoidRegression,
    /// Sigmoid of the margin, reported as `[1 - p, p]`
    /// (`binary:logistic`, `binary:logitraw`).
    SigmoidBinary,
    /// Softmax over the per-class margins (`multi:softprob`, `multi:softmax`).
    Softmax,
}

/// One node of a flattened tree. Leaves have `left == LEAF`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Node {
    pub(crate) left: u32,
    pub(crate) right: u32,
    pub(crate) feature: u32,
    /// Split threshold for inner nodes, leaf value for leaves (as XGBoost stores it).
    pub(crate) value: f32,
    pub(crate) default_left: bool,
}

/// The child index that marks a leaf.
pub(crate) const LEAF: u32 = u32::MAX;

/// One regression tree plus the output group (class) it contributes to.
#[derive(Debug, Clone)]
pub(crate) struct Tree {
    pub(crate) nodes: Vec<Node>,
    pub(crate) group: usize,
}

impl Tree {
    /// Follow splits from the root to a leaf and return its value.
    ///
    /// Parse-time validation guarantees every reachable path ends at a leaf
    /// within `nodes.len()` steps; the step bound is a second line of defence.
    pub(crate) fn leaf_value(&self, row: &[f32]) -> f32 {
        let mut idx = 0usize;
        for _ in 0..self.nodes.len() {
            let node = self.nodes[idx];
            if node.left == LEAF {
                return node.value;
            }
            let x = row[node.feature as usize];
            let go_left = if x.is_nan() {
                node.default_left
            } else {
                x < node.value
            };
            idx = if go_left { node.left } else { node.right } as usize;
        }
        // Unreachable for validated trees; a NaN-free fallback keeps the evaluator total.
        0.0
    }
}

/// A parsed, validated XGBoost tree ensemble, ready to score rows.
#[derive(Debug, Clone)]
pub struct Ensemble {
    trees: Vec<Tree>,
    /// Base margin per output group (already on the margin scale).
    base_margin: Vec<f32>,
    num_features: usize,
    feature_names: Option<Vec<String>>,
    objective: String,
    link: Link,
    version: Option<String>,
    /// The same trees laid out for the branch-free descent, when every tree
    /// is shallow enough (see [`crate::dense`]).
    dense: Option<Dense>,
}

// --- serde mirror of the parts of the JSON format we read -------------------

#[derive(Deserialize)]
struct RawModel {
    learner: Option<serde_json::Value>,
    version: Option<Vec<u64>>,
}

#[derive(Deserialize)]
struct RawLearner {
    feature_names: Option<Vec<String>>,
    gradient_booster: Option<serde_json::Value>,
    learner_model_param: Option<RawLearnerParam>,
    objective: Option<RawObjective>,
}

#[derive(Deserialize)]
struct RawLearnerParam {
    base_score: Option<StrOrNum>,
    num_class: Option<StrOrNum>,
    num_feature: Option<StrOrNum>,
    num_target: Option<StrOrNum>,
}

#[derive(Deserialize)]
struct RawObjective {
    name: Option<String>,
}

#[derive(Deserialize)]
struct RawBooster {
    name: Option<String>,
    model: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawTreeModel {
    gbtree_model_param: Option<RawGbtreeParam>,
    tree_info: Option<Vec<i64>>,
    trees: Option<Vec<serde_json::Value>>,
}

#[derive(Deserialize)]
struct RawGbtreeParam {
    num_trees: Option<StrOrNum>,
}

#[derive(Deserialize)]
struct RawTree {
    left_children: Option<Vec<i64>>,
    right_children: Option<Vec<i64>>,
    split_indices: Option<Vec<i64>>,
    split_conditions: Option<Vec<f32>>,
    default_left: Option<Vec<BoolOrInt>>,
    base_weights: Option<Vec<f32>>,
    split_type: Option<Vec<i64>>,
    tree_param: Option<RawTreeParam>,
}

#[derive(Deserialize)]
struct RawTreeParam {
    num_nodes: Option<StrOrNum>,
    size_leaf_vector: Option<StrOrNum>,
}

/// XGBoost writes most scalar parameters as strings; accept numbers too.
#[derive(Deserialize)]
#[serde(untagged)]
enum StrOrNum {
    Str(String),
    Num(f64),
}

impl StrOrNum {
    fn text(&self) -> String {
        match self {
            StrOrNum::Str(s) => s.trim().to_owned(),
            StrOrNum::Num(n) => n.to_string(),
        }
    }
}

/// `default_left` is an array of 0/1 in current versions and of booleans in some older ones.
#[derive(Deserialize)]
#[serde(untagged)]
enum BoolOrInt {
    Bool(bool),
    Int(i64),
}

fn required<T>(value: Option<T>, field: &str) -> Result<T, ModelError> {
    value.ok_or_else(|| ModelError::MissingField(field.to_owned()))
}

fn decode<T: DeserializeOwned>(value: serde_json::Value, field: &str) -> Result<T, ModelError> {
    serde_json::from_value(value).map_err(|e| ModelError::Malformed(format!("`{field}`: {e}")))
}

fn parse_count(value: &StrOrNum, field: &str) -> Result<usize, ModelError> {
    let text = value.text();
    // Some writers print integers as floats ("3.0"); accept those if exact.
    if let Ok(n) = text.parse::<usize>() {
        return Ok(n);
    }
    match text.parse::<f64>() {
        Ok(f) if f >= 0.0 && f.fract() == 0.0 && f <= u32::MAX as f64 => Ok(f as usize),
        _ => Err(ModelError::InvalidField {
            field: field.to_owned(),
            reason: format!("expected a non-negative integer, found `{text}`"),
        }),
    }
}

/// Parse `base_score`: a scalar (`"5E-1"`, XGBoost < 3) or a bracketed vector
/// (`"[6.2E-1]"`, `"[a,b,c]"`, XGBoost >= 3, one entry per output group).
fn parse_base_score(value: &StrOrNum) -> Result<Vec<f32>, ModelError> {
    const FIELD: &str = "learner.learner_model_param.base_score";
    let text = value.text();
    let inner = match (text.strip_prefix('['), text.strip_suffix(']')) {
        (Some(_), Some(_)) => &text[1..text.len() - 1],
        (None, None) => text.as_str(),
        _ => {
            return Err(ModelError::InvalidField {
                field: FIELD.to_owned(),
                reason: format!("unbalanced brackets in `{text}`"),
            });
        }
    };
    let values = inner
        .split(',')
        .map(|part| {
            let part = part.trim();
            part.parse::<f32>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| ModelError::InvalidField {
                    field: FIELD.to_owned(),
                    reason: format!("`{part}` is not a finite number"),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(values)
}

fn link_for(objective: &str) -> Result<Link, ModelError> {
    Ok(match objective {
        "reg:squarederror" | "reg:linear" => Link::Identity,
        "reg:logistic" => Link::SigmoidRegression,
        "binary:logistic" | "binary:logitraw" => Link::SigmoidBinary,
        "multi:softprob" | "multi:softmax" => Link::Softmax,
        other => return Err(ModelError::UnsupportedObjective(other.to_owned())),
    })
}

/// XGBoost's `ProbToMargin` for the logistic family: `base_score` is stored as
/// a probability and turned into a log-odds margin before trees are added.
/// Other supported objectives store the margin itself.
fn to_margin(link: Link, base: f32) -> Result<f32, ModelError> {
    match link {
        Link::SigmoidBinary | Link::SigmoidRegression => {
            if !(base > 0.0 && base < 1.0) {
                return Err(ModelError::InvalidField {
                    field: "learner.learner_model_param.base_score".to_owned(),
                    reason: format!(
                        "{base} is not a probability in (0, 1) for a logistic objective"
                    ),
                });
            }
            Ok(-(1.0f32 / base - 1.0f32).ln())
        }
        Link::Identity | Link::Softmax => Ok(base),
    }
}

fn parse_tree(
    index: usize,
    raw: RawTree,
    num_features: usize,
    groups: usize,
    group: i64,
) -> Result<Tree, ModelError> {
    let field = |name: &str| format!("learner.gradient_booster.model.trees[{index}].{name}");
    let left = required(raw.left_children, &field("left_children"))?;
    let right = required(raw.right_children, &field("right_children"))?;
    let split_indices = required(raw.split_indices, &field("split_indices"))?;
    let conditions = required(raw.split_conditions, &field("split_conditions"))?;
    let default_left = required(raw.default_left, &field("default_left"))?;
    let base_weights = required(raw.base_weights, &field("base_weights"))?;
    let n = left.len();
    if n == 0 {
        return Err(ModelError::BadTree {
            tree: index,
            node: 0,
            reason: "tree has no nodes".to_owned(),
        });
    }
    if n >= LEAF as usize {
        return Err(ModelError::BadTree {
            tree: index,
            node: 0,
            reason: "tree has too many nodes".to_owned(),
        });
    }
    let check = |name: &'static str, found: usize| {
        if found == n {
            Ok(())
        } else {
            Err(ModelError::LengthMismatch {
                tree: index,
                field: name,
                expected: n,
                found,
            })
        }
    };
    check("right_children", right.len())?;
    check("split_indices", split_indices.len())?;
    check("split_conditions", conditions.len())?;
    check("default_left", default_left.len())?;
    check("base_weights", base_weights.len())?;
    if let Some(types) = &raw.split_type {
        check("split_type", types.len())?;
    }
    if let Some(param) = &raw.tree_param {
        if let Some(declared) = &param.num_nodes {
            let declared = parse_count(declared, &field("tree_param.num_nodes"))?;
            check("tree_param.num_nodes", declared)?;
        }
        if let Some(size) = &param.size_leaf_vector
            && parse_count(size, &field("tree_param.size_leaf_vector"))? > 1
        {
            return Err(ModelError::Unsupported(format!(
                "tree {index} has vector leaves (multi-target trees)"
            )));
        }
    }
    if group < 0 || group as u64 >= groups as u64 {
        return Err(ModelError::InvalidField {
            field: format!("learner.gradient_booster.model.tree_info[{index}]"),
            reason: format!("output group {group} is out of range (the model has {groups})"),
        });
    }

    let bad = |node: usize, reason: String| ModelError::BadTree {
        tree: index,
        node,
        reason,
    };
    let mut nodes = Vec::with_capacity(n);
    for i in 0..n {
        let value = conditions[i];
        let is_default_left = match default_left[i] {
            BoolOrInt::Bool(b) => b,
            BoolOrInt::Int(0) => false,
            BoolOrInt::Int(1) => true,
            BoolOrInt::Int(other) => {
                return Err(bad(i, format!("default_left is {other}, expected 0 or 1")));
            }
        };
        let (l, r) = (left[i], right[i]);
        if l == -1 && r == -1 {
            if !value.is_finite() {
                return Err(bad(i, format!("leaf value {value} is not finite")));
            }
            nodes.push(Node {
                left: LEAF,
                right: LEAF,
                feature: 0,
                value,
                default_left: false,
            });
            continue;
        }
        if l == -1 || r == -1 {
            return Err(bad(
                i,
                "exactly one child is -1; a node must have two children or none".to_owned(),
            ));
        }
        for (side, child) in [("left", l), ("right", r)] {
            if child < 0 || child as u64 >= n as u64 {
                return Err(bad(
                    i,
                    format!("{side} child {child} is out of range (tree has {n} nodes)"),
                ));
            }
        }
        if let Some(types) = &raw.split_type
            && types[i] != 0
        {
            return Err(ModelError::Unsupported(format!(
                "tree {index}, node {i}: categorical splits (split_type {})",
                types[i]
            )));
        }
        let feature = split_indices[i];
        if feature < 0 || feature as u64 >= num_features as u64 {
            return Err(bad(
                i,
                format!(
                    "split feature {feature} is out of range (model has {num_features} features)"
                ),
            ));
        }
        if value.is_nan() {
            return Err(bad(i, "split condition is NaN".to_owned()));
        }
        nodes.push(Node {
            left: l as u32,
            right: r as u32,
            feature: feature as u32,
            value,
            default_left: is_default_left,
        });
    }

    // Every node reachable from the root must be reached exactly once: this
    // rules out cycles and shared subtrees, so each descent ends at a leaf in
    // at most `n` steps. Unreachable nodes (XGBoost's deleted nodes) are fine.
    let mut seen = vec![false; n];
    let mut stack = vec![0usize];
    seen[0] = true;
    while let Some(i) = stack.pop() {
        let node = nodes[i];
        if node.left == LEAF {
            continue;
        }
        for child in [node.left as usize, node.right as usize] {
            if seen[child] {
                return Err(bad(
                    i,
                    format!("child {child} is reached twice (cycle or shared subtree)"),
                ));
            }
            seen[child] = true;
            stack.push(child);
        }
    }
    Ok(Tree {
        nodes,
        group: group as usize,
    })
}

impl Ensemble {
    /// Parse and validate an XGBoost JSON model (as written by `save_model("x.json")`).
    pub fn from_json(bytes: &[u8]) -> Result<Ensemble, ModelError> {
        let raw: RawModel =
            serde_json::from_slice(bytes).map_err(|e| ModelError::Malformed(e.to_string()))?;
        let version = raw
            .version
            .map(|v| v.iter().map(u64::to_string).collect::<Vec<_>>().join("."));
        let learner: RawLearner = decode(required(raw.learner, "learner")?, "learner")?;
        let param = required(learner.learner_model_param, "learner.learner_model_param")?;
        let objective = required(
            required(learner.objective, "learner.objective")?.name,
            "learner.objective.name",
        )?;
        let link = link_for(&objective)?;

        let num_features = parse_count(
            &required(param.num_feature, "learner.learner_model_param.num_feature")?,
            "learner.learner_model_param.num_feature",
        )?;
        let num_class = match &param.num_class {
            Some(v) => parse_count(v, "learner.learner_model_param.num_class")?,
            None => 0,
        };
        if let Some(t) = &param.num_target
            && parse_count(t, "learner.learner_model_param.num_target")? > 1
        {
            return Err(ModelError::Unsupported(
                "multi-target models (num_target > 1)".to_owned(),
            ));
        }
        let groups = match link {
            Link::Softmax => {
                if num_class < 2 {
                    return Err(ModelError::InvalidField {
                        field: "learner.learner_model_param.num_class".to_owned(),
                        reason: format!(
                            "objective {objective} needs at least 2 classes, found {num_class}"
                        ),
                    });
                }
                num_class
            }
            _ => {
                if num_class > 1 {
                    return Err(ModelError::InvalidField {
                        field: "learner.learner_model_param.num_class".to_owned(),
                        reason: format!(
                            "objective {objective} has one output, but num_class is {num_class}"
                        ),
                    });
                }
                1
            }
        };

        let base = parse_base_score(&required(
            param.base_score,
            "learner.learner_model_param.base_score",
        )?)?;
        let base_margin = match base.len() {
            1 => vec![to_margin(link, base[0])?; groups],
            k if k == groups => base
                .iter()
                .map(|&b| to_margin(link, b))
                .collect::<Result<_, _>>()?,
            k => {
                return Err(ModelError::InvalidField {
                    field: "learner.learner_model_param.base_score".to_owned(),
                    reason: format!("has {k} values but the model has {groups} output groups"),
                });
            }
        };

        let feature_names = match learner.feature_names {
            Some(names) if !names.is_empty() => {
                if names.len() != num_features {
                    return Err(ModelError::InvalidField {
                        field: "learner.feature_names".to_owned(),
                        reason: format!("{} names for {num_features} features", names.len()),
                    });
                }
                Some(names)
            }
            _ => None,
        };

        let booster: RawBooster = decode(
            required(learner.gradient_booster, "learner.gradient_booster")?,
            "learner.gradient_booster",
        )?;
        let booster_name = required(booster.name, "learner.gradient_booster.name")?;
        if booster_name != "gbtree" {
            return Err(ModelError::Unsupported(format!(
                "booster `{booster_name}` (only gbtree is supported)"
            )));
        }
        let model: RawTreeModel = decode(
            required(booster.model, "learner.gradient_booster.model")?,
            "learner.gradient_booster.model",
        )?;
        let raw_trees = required(model.trees, "learner.gradient_booster.model.trees")?;
        let tree_info = required(model.tree_info, "learner.gradient_booster.model.tree_info")?;
        if tree_info.len() != raw_trees.len() {
            return Err(ModelError::InvalidField {
                field: "learner.gradient_booster.model.tree_info".to_owned(),
                reason: format!("{} entries for {} trees", tree_info.len(), raw_trees.len()),
            });
        }
        if let Some(declared) = model.gbtree_model_param.and_then(|p| p.num_trees) {
            let declared = parse_count(
                &declared,
                "learner.gradient_booster.model.gbtree_model_param.num_trees",
            )?;
            if declared != raw_trees.len() {
                return Err(ModelError::InvalidField {
                    field: "learner.gradient_booster.model.gbtree_model_param.num_trees".to_owned(),
                    reason: format!(
                        "declares {declared} trees but {} are present",
                        raw_trees.len()
                    ),
                });
            }
        }
        let trees = raw_trees
            .into_iter()
            .zip(tree_info)
            .enumerate()
            .map(|(i, (value, group))| {
                let raw: RawTree =
                    decode(value, &format!("learner.gradient_booster.model.trees[{i}]"))?;
                parse_tree(i, raw, num_features, groups, group)
            })
            .collect::<Result<Vec<_>, _>>()?;

        let dense = Dense::build(&trees, num_features, groups);
        Ok(Ensemble {
            dense,
            trees,
            base_margin,
            num_features,
            feature_names,
            objective,
            link,
            version,
        })
    }

    /// The task the objective implies; decides the output layout.
    pub fn task(&self) -> Task {
        match self.link {
            Link::Identity | Link::SigmoidRegression => Task::Regression,
            Link::SigmoidBinary => Task::BinaryClassification,
            Link::Softmax => Task::MulticlassClassification,
        }
    }

    /// Values per row that [`Ensemble::predict`] returns: 1 for regression,
    /// 2 for binary classification, `num_class` for multi-class.
    pub fn output_width(&self) -> usize {
        match self.link {
            Link::Identity | Link::SigmoidRegression => 1,
            Link::SigmoidBinary => 2,
            Link::Softmax => self.base_margin.len(),
        }
    }

    /// Number of input features the model was trained on (`num_feature`).
    pub fn num_features(&self) -> usize {
        self.num_features
    }

    /// Feature names saved with the model, if it was trained with them.
    /// Without names, features are matched by position.
    pub fn feature_names(&self) -> Option<&[String]> {
        self.feature_names.as_deref()
    }

    /// The XGBoost objective name, e.g. `binary:logistic`.
    pub fn objective(&self) -> &str {
        &self.objective
    }

    /// The XGBoost version that wrote the model (`"3.2.0"`), if recorded.
    pub fn xgboost_version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    /// Number of trees in the ensemble.
    pub fn num_trees(&self) -> usize {
        self.trees.len()
    }

    /// Whether predictions take the branch-free dense descent.
    #[cfg(test)]
    pub(crate) fn is_dense(&self) -> bool {
        self.dense.is_some()
    }

    /// The same ensemble scored by the pointer walk only (for comparing the
    /// two evaluators).
    #[cfg(test)]
    pub(crate) fn pointer_walk_only(&self) -> Ensemble {
        Ensemble {
            dense: None,
            ..self.clone()
        }
    }

    /// Map the columns of an input batch to the model's features.
    ///
    /// Returns, for each model feature in order, the index of the column that
    /// feeds it. A model with feature names is matched by name (extra columns
    /// are ignored; every missing feature is named in the error); a model
    /// without names takes the first `num_features()` columns by position.
    pub fn map_columns<S: AsRef<str>>(&self, columns: &[S]) -> Result<Vec<usize>, ModelError> {
        match &self.feature_names {
            Some(names) => airlock_guest::batch::positions_by_name(names, columns)
                .map_err(ModelError::MissingFeatures),
            None if columns.len() >= self.num_features => Ok((0..self.num_features).collect()),
            None => Err(ModelError::BadInput(format!(
                "the model has no feature names and takes {} features by position, but the input has {} columns",
                self.num_features,
                columns.len()
            ))),
        }
    }

    /// Predict for row-major `rows` of `n_features` values each (NaN = missing).
    ///
    /// Columns must be in the model's feature order (see
    /// [`Ensemble::map_columns`]); `n_features` may exceed the model's
    /// feature count (extra columns are ignored) but not fall short of it.
    /// Returns `rows * output_width()` values, row-major: `[1 - p, p]` per row
    /// for binary classification, class probabilities for multi-class, one
    /// value for regression.
    pub fn predict(&self, rows: &[f64], n_features: usize) -> Result<Vec<f64>, ModelError> {
        if n_features < self.num_features {
            return Err(ModelError::BadInput(format!(
                "rows have {n_features} features but the model needs {}",
                self.num_features
            )));
        }
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        if n_features == 0 || !rows.len().is_multiple_of(n_features) {
            return Err(ModelError::BadInput(format!(
                "{} values do not divide into rows of {n_features} features",
                rows.len()
            )));
        }
        let n_rows = rows.len() / n_features;
        Ok(self.score(n_rows, |r, out| {
            let row = &rows[r * n_features..][..out.len()];
            let mut missing = false;
            for (f, &x) in out.iter_mut().zip(row) {
                *f = x as f32;
                missing |= x.is_nan();
            }
            missing
        }))
    }

    /// Predict for a batch given as columns in the model's feature order
    /// (see [`Ensemble::map_columns`]), one value per row each (NaN =
    /// missing); extra columns are ignored. The same answers as
    /// [`Ensemble::predict`] on the row-major matrix, without building it:
    /// a plugin scores the columns the host handed it in place.
    pub fn predict_columns(&self, columns: &[&[f64]]) -> Result<Vec<f64>, ModelError> {
        if columns.len() < self.num_features {
            return Err(ModelError::BadInput(format!(
                "{} columns but the model needs {}",
                columns.len(),
                self.num_features
            )));
        }
        let columns = &columns[..self.num_features];
        let n_rows = columns.first().map_or(0, |c| c.len());
        if let Some(c) = columns.iter().position(|c| c.len() != n_rows) {
            return Err(ModelError::BadInput(format!(
                "column {c} has {} values but column 0 has {n_rows}",
                columns[c].len()
            )));
        }
        if n_rows == 0 {
            return Ok(Vec::new());
        }
        Ok(self.score(n_rows, |r, out| {
            let mut missing = false;
            for (f, column) in out.iter_mut().zip(columns) {
                // Every column holds `n_rows` values (checked above); `get`
                // keeps a bounds branch out of the inner loop.
                let x = column.get(r).copied().unwrap_or(f64::NAN);
                *f = x as f32;
                missing |= x.is_nan();
            }
            missing
        }))
    }

    /// Scores `n_rows` rows; `fill(r, features)` writes row `r`'s model
    /// features, cast to `f32`, into `features` (`num_features` long) and
    /// says whether any of them is missing (NaN).
    fn score(&self, n_rows: usize, fill: impl Fn(usize, &mut [f32]) -> bool) -> Vec<f64> {
        let nf = self.num_features;
        let mut out = Vec::with_capacity(n_rows * self.output_width());
        let mut features = vec![0f32; nf];
        let mut dense_row = [0f32; SLOTS];
        dense_row[PASS_SLOT] = f32::NEG_INFINITY;
        let mut margin = vec![0f32; self.base_margin.len()];
        // One-group models score whole blocks of rows side by side first.
        let mut next = 0;
        if let Some(dense) = self.dense.as_ref().filter(|d| d.single_group()) {
            let mut block = [dense_row; BLOCK];
            while next + BLOCK <= n_rows {
                let mut missing = false;
                for (k, slots) in block.iter_mut().enumerate() {
                    missing |= fill(next + k, &mut slots[..nf]);
                }
                let mut margins = [self.base_margin[0]; BLOCK];
                dense.add_leaves_block(&block, &mut margins, missing);
                for m in margins {
                    self.push_outputs(&[m], &mut out);
                }
                next += BLOCK;
            }
        }
        for r in next..n_rows {
            margin.copy_from_slice(&self.base_margin);
            match &self.dense {
                Some(dense) => {
                    fill(r, &mut dense_row[..nf]);
                    dense.add_leaves(&dense_row, &mut margin);
                }
                None => {
                    fill(r, &mut features);
                    for tree in &self.trees {
                        margin[tree.group] += tree.leaf_value(&features);
                    }
                }
            }
            self.push_outputs(&margin, &mut out);
        }
        out
    }

    /// Appends one row's outputs, from its margins, to `out`.
    fn push_outputs(&self, margin: &[f32], out: &mut Vec<f64>) {
        match self.link {
            Link::Identity => out.push(f64::from(margin[0])),
            Link::SigmoidRegression => out.push(f64::from(sigmoid(margin[0]))),
            Link::SigmoidBinary => {
                let p = f64::from(sigmoid(margin[0]));
                out.push(1.0 - p);
                out.push(p);
            }
            Link::Softmax => softmax_into(margin, out),
        }
    }
}

/// XGBoost's `f32` logistic function (the exponent is clamped so it cannot overflow).
fn sigmoid(x: f32) -> f32 {
    1.0 / ((-x).min(88.7).exp() + 1.0)
}

/// XGBoost's softmax: shift by the maximum, exponentiate in `f32`, normalise.
fn softmax_into(margin: &[f32], out: &mut Vec<f64>) {
    let max = margin.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = margin.iter().map(|&m| (m - max).exp()).collect();
    let sum: f64 = exps.iter().map(|&e| f64::from(e)).sum();
    let sum = sum as f32;
    out.extend(exps.iter().map(|&e| f64::from(e / sum)));
}
