//! Building a gate step's [`Context`] in a validator's native unit tests.
//!
//! Every validator's tests need a context with a candidate, data,
//! predictions and sometimes labels and a reference; writing the whole
//! record by hand in each crate hid what each test actually varies. This
//! builder starts from a small valid context (a binary classifier with no
//! declared inputs, two rows of one numeric column `x`, no labels) and each
//! test states only what it changes.

use crate::{
    Batch, Context, Feature, FeatureKind, ModelInfo, ModelMetadata, OutputSchema, Predictions,
    Reference, Task,
};

/// A [`Context`] under construction; [`TestContext::build`] finishes it.
#[derive(Debug, Clone)]
pub struct TestContext {
    ctx: Context,
}

impl TestContext {
    /// A valid context for step `step`: config `{}`, seed 0, a binary
    /// candidate `m` 1 with no inputs, two rows of `x`, and predictions
    /// `[0.5, 0.5]` per row.
    pub fn new(step: &str) -> TestContext {
        TestContext {
            ctx: Context {
                step: step.into(),
                config: "{}".into(),
                seed: 0,
                candidate: ModelInfo {
                    metadata: ModelMetadata {
                        name: "m".into(),
                        version: "1".into(),
                        inputs: Vec::new(),
                        output: OutputSchema {
                            task: Task::BinaryClassification,
                            classes: Vec::new(),
                        },
                    },
                    digest: "sha256:00".into(),
                    bundle_digest: None,
                },
                baseline: None,
                data: Batch {
                    rows: 2,
                    columns: vec![crate::Column {
                        name: "x".into(),
                        values: crate::ColumnValues::Numeric(vec![1.0, 2.0]),
                    }],
                },
                labels: None,
                candidate_predictions: Predictions::probabilities(2, vec![0.5; 4]),
                baseline_predictions: None,
                reference: None,
            },
        }
    }

    /// The step's configuration (a JSON object).
    pub fn config(mut self, config: &serde_json::Value) -> Self {
        self.ctx.config = config.to_string();
        self
    }

    /// The run's seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.ctx.seed = seed;
        self
    }

    /// The candidate's task and class labels.
    pub fn task(mut self, task: Task, classes: &[&str]) -> Self {
        self.ctx.candidate.metadata.output = OutputSchema {
            task,
            classes: classes.iter().map(|c| c.to_string()).collect(),
        };
        self
    }

    /// The candidate's declared numeric inputs.
    pub fn numeric_inputs(self, names: &[&str]) -> Self {
        let inputs = names
            .iter()
            .map(|n| Feature {
                name: n.to_string(),
                kind: FeatureKind::Numeric,
            })
            .collect();
        self.inputs(inputs)
    }

    /// The candidate's declared inputs, of any kind.
    pub fn inputs(mut self, inputs: Vec<Feature>) -> Self {
        self.ctx.candidate.metadata.inputs = inputs;
        self
    }

    /// The candidate's whole metadata.
    pub fn metadata(mut self, metadata: ModelMetadata) -> Self {
        self.ctx.candidate.metadata = metadata;
        self
    }

    /// The evaluation rows.
    pub fn data(mut self, data: Batch) -> Self {
        self.ctx.data = data;
        self
    }

    /// The labels of the evaluation rows.
    pub fn labels(mut self, labels: Option<Vec<f64>>) -> Self {
        self.ctx.labels = labels;
        self
    }

    /// The candidate's predictions on the evaluation rows.
    pub fn predictions(mut self, predictions: Predictions) -> Self {
        self.ctx.candidate_predictions = predictions;
        self
    }

    /// A reference window.
    pub fn reference(mut self, reference: Option<Reference>) -> Self {
        self.ctx.reference = reference;
        self
    }

    /// The finished context.
    pub fn build(self) -> Context {
        self.ctx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_context_is_consistent_and_each_setter_changes_only_its_part() {
        let c = TestContext::new("s").build();
        assert_eq!(
            c.data.rows as usize * 2,
            c.candidate_predictions.values.len()
        );
        assert_eq!(c.step, "s");
        let c = TestContext::new("s")
            .config(&serde_json::json!({"a": 1}))
            .seed(7)
            .task(Task::MulticlassClassification, &["a", "b", "c"])
            .numeric_inputs(&["x"])
            .labels(Some(vec![0.0, 1.0]))
            .build();
        assert_eq!(c.config, r#"{"a":1}"#);
        assert_eq!(c.seed, 7);
        assert_eq!(c.candidate.metadata.output.classes, ["a", "b", "c"]);
        assert_eq!(c.candidate.metadata.inputs[0].name, "x");
        assert_eq!(c.labels, Some(vec![0.0, 1.0]));
        assert_eq!(c.data.rows, 2);
    }
}
