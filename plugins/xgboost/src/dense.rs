//! A branch-free layout of shallow trees for the evaluator's hot loop.
//!
//! Why it exists: the pointer walk in [`crate::ensemble`] branches at every
//! node (is it a leaf? is the value missing? which side?). Natively half of
//! those branches are unpredictable; inside the sandbox each one is also a
//! point where the fuel counter is updated, so the walk pays twice. Boosted
//! trees are shallow (XGBoost's default `max_depth` is 6), so a tree of depth
//! up to [`MAX_DEPTH`] is laid out here as a complete binary tree in an array:
//! the children of slot `i` are `2i + 1` and `2i + 2`, a leaf above the bottom
//! level becomes a chain of pass-through splits that always go left, and a
//! descent is exactly `depth` steps of loads, one compare and integer
//! arithmetic, with no data-dependent branch and no bounds check (indices are
//! masked into fixed-size arrays).
//!
//! Every decision is the pointer walk's (`x < threshold`, a missing value
//! takes the split's default side), and leaves are added in the same tree
//! order, so predictions are bit-identical; the tests below check that on
//! random trees with missing and infinite values and on the shipped model.
#![forbid(unsafe_code)]

use crate::ensemble::{LEAF, Tree};

/// The deepest tree laid out densely (256 slots per tree); deeper
/// ensembles keep the pointer walk.
pub(crate) const MAX_DEPTH: usize = 8;

/// The most slots (splits plus leaves, 12 bytes each) a dense layout may
/// take: 48 MiB.
pub(crate) const MAX_SLOTS: usize = 4 << 20;

/// The most slots per node of the pointer layout: the dense layout may
/// take a few times the pointer walk's memory, not orders of magnitude.
pub(crate) const SLOTS_PER_NODE: usize = 8;

/// Feature slots in a dense row: model features first, the last slot is the
/// pass-through value. Models with more features keep the pointer walk.
pub(crate) const SLOTS: usize = 256;

/// The row slot pass-through splits read: `-inf` is below their threshold
/// of 0, so they always go left (and it is never a missing value).
pub(crate) const PASS_SLOT: usize = SLOTS - 1;

/// Rows that descend side by side in [`Dense::add_leaves_block`].
pub(crate) const BLOCK: usize = 4;

/// One split of the complete tree.
#[derive(Debug, Clone, Copy)]
struct Split {
    threshold: f32,
    feature: u8,
    default_left: bool,
}

const PASS: Split = Split {
    threshold: 0.0,
    feature: PASS_SLOT as u8,
    default_left: true,
};

/// Every tree of an ensemble as a complete binary tree of one common depth.
#[derive(Debug, Clone)]
pub(crate) struct Dense {
    depth: usize,
    /// `1 << depth` per tree; slot `(1 << depth) - 1` is unused padding.
    splits: Vec<Split>,
    /// `1 << depth` per tree, left to right along the bottom level.
    leaves: Vec<f32>,
    /// Output group per tree.
    groups: Vec<u32>,
    single_group: bool,
    /// The model's features: the leading slots of a dense row.
    features: usize,
}

/// Edges on the longest root-to-leaf path of a validated tree.
fn depth_of(tree: &Tree) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(0usize, 0usize)];
    while let Some((i, d)) = stack.pop() {
        let node = tree.nodes[i];
        if node.left == LEAF {
            deepest = deepest.max(d);
        } else {
            stack.push((node.left as usize, d + 1));
            stack.push((node.right as usize, d + 1));
        }
    }
    deepest
}

/// Writes the subtree rooted at `node` into slot `slot` (at `level`) of a
/// complete tree with `n = 1 << depth` leaves.
fn fill(
    tree: &Tree,
    node: usize,
    slot: usize,
    level: usize,
    depth: usize,
    splits: &mut [Split],
    leaves: &mut [f32],
) {
    let n = 1usize << depth;
    let this = tree.nodes[node];
    if level == depth {
        // Validated depth: only leaves reach the bottom level.
        leaves[slot - (n - 1)] = this.value;
        return;
    }
    if this.left == LEAF {
        // A shallow leaf: pass through to the bottom, where every slot
        // under it holds its value.
        splits[slot] = PASS;
        fill(tree, node, 2 * slot + 1, level + 1, depth, splits, leaves);
        fill(tree, node, 2 * slot + 2, level + 1, depth, splits, leaves);
        return;
    }
    splits[slot] = Split {
        threshold: this.value,
        feature: this.feature as u8,
        default_left: this.default_left,
    };
    fill(
        tree,
        this.left as usize,
        2 * slot + 1,
        level + 1,
        depth,
        splits,
        leaves,
    );
    fill(
        tree,
        this.right as usize,
        2 * slot + 2,
        level + 1,
        depth,
        splits,
        leaves,
    );
}

/// Calls the monomorphised method for the layout's depth (1 to
/// [`MAX_DEPTH`]): the leaf count is a constant, so descents unroll and
/// their masks are compile-time.
macro_rules! by_depth {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match $self.depth {
            1 => $self.$method::<2>($($arg),*),
            2 => $self.$method::<4>($($arg),*),
            3 => $self.$method::<8>($($arg),*),
            4 => $self.$method::<16>($($arg),*),
            5 => $self.$method::<32>($($arg),*),
            6 => $self.$method::<64>($($arg),*),
            7 => $self.$method::<128>($($arg),*),
            _ => $self.$method::<256>($($arg),*),
        }
    };
}

impl Dense {
    /// The dense layout of `trees`, or `None` when a tree is deeper than
    /// [`MAX_DEPTH`] or the model has more features than a dense row holds.
    pub(crate) fn build(trees: &[Tree], num_features: usize, groups: usize) -> Option<Dense> {
        if num_features >= PASS_SLOT || trees.is_empty() {
            return None;
        }
        let depth = trees.iter().map(depth_of).max()?.max(1);
        if depth > MAX_DEPTH {
            return None;
        }
        let n = 1usize << depth;
        // The layout pads every tree to the deepest one's full width. A
        // bundle of many sparse, deep trees (chains, say) would need far
        // more memory than its nodes; past the budget it keeps the pointer
        // walk instead of failing to load under the sandbox's memory cap.
        let slots = trees.len().checked_mul(n)?;
        let nodes: usize = trees.iter().map(|t| t.nodes.len()).sum();
        if slots > MAX_SLOTS || slots > SLOTS_PER_NODE * nodes {
            return None;
        }
        let mut splits = vec![PASS; slots];
        let mut leaves = vec![0f32; slots];
        for (t, tree) in trees.iter().enumerate() {
            let range = t * n..(t + 1) * n;
            fill(
                tree,
                0,
                0,
                0,
                depth,
                &mut splits[range.clone()],
                &mut leaves[range],
            );
        }
        Some(Dense {
            depth,
            splits,
            leaves,
            groups: trees.iter().map(|t| t.group as u32).collect(),
            single_group: groups == 1,
            features: num_features,
        })
    }

    /// Adds every tree's leaf for `row` to `margin[group]`, in tree order.
    /// `row` holds the features in its first slots and `-inf` in
    /// [`PASS_SLOT`].
    pub(crate) fn add_leaves(&self, row: &[f32; SLOTS], margin: &mut [f32]) {
        by_depth!(self.add(row, margin))
    }

    /// Whether [`Dense::add_leaves_block`] applies (one output group).
    pub(crate) fn single_group(&self) -> bool {
        self.single_group
    }

    /// [`Dense::add_leaves`] for [`BLOCK`] rows of a one-group model at
    /// once: the rows descend each tree side by side, so their independent
    /// load chains overlap instead of each waiting on the last. Each row's
    /// sum still takes its leaves in tree order.
    ///
    /// `missing` says whether any row of the block has a missing (NaN)
    /// feature; the caller learns it while filling the rows. Without one,
    /// every step leaves the default-side term out.
    pub(crate) fn add_leaves_block(
        &self,
        rows: &[[f32; SLOTS]; BLOCK],
        margins: &mut [f32; BLOCK],
        missing: bool,
    ) {
        debug_assert!(
            missing
                || rows
                    .iter()
                    .all(|r| r[..self.features].iter().all(|x| !x.is_nan())),
            "a block with a missing value was declared complete"
        );
        by_depth!(self.add_block(rows, margins, missing))
    }

    fn add_block<const N: usize>(
        &self,
        rows: &[[f32; SLOTS]; BLOCK],
        margins: &mut [f32; BLOCK],
        missing: bool,
    ) {
        if missing {
            self.add_block_as::<N, true>(rows, margins);
        } else {
            self.add_block_as::<N, false>(rows, margins);
        }
    }

    /// The block descent; `MISSING = false` (no row of the block has a
    /// missing value) leaves the default-side term out of every step.
    fn add_block_as<const N: usize, const MISSING: bool>(
        &self,
        rows: &[[f32; SLOTS]; BLOCK],
        margins: &mut [f32; BLOCK],
    ) {
        let (splits, _) = self.splits.as_chunks::<N>();
        let (leaves, _) = self.leaves.as_chunks::<N>();
        let mut sums = *margins;
        for (s, l) in splits.iter().zip(leaves) {
            let mut at = [0usize; BLOCK];
            for _ in 0..N.trailing_zeros() {
                for (i, row) in at.iter_mut().zip(rows) {
                    *i = step::<N, MISSING>(s, row, *i);
                }
            }
            for (sum, i) in sums.iter_mut().zip(at) {
                *sum += l[(i + 1) & (N - 1)];
            }
        }
        *margins = sums;
    }

    fn add<const N: usize>(&self, row: &[f32; SLOTS], margin: &mut [f32]) {
        let (splits, _) = self.splits.as_chunks::<N>();
        let (leaves, _) = self.leaves.as_chunks::<N>();
        if self.single_group {
            if let Some(m) = margin.first_mut() {
                let mut sum = *m;
                for (s, l) in splits.iter().zip(leaves) {
                    sum += descend(s, l, row);
                }
                *m = sum;
            }
            return;
        }
        for ((s, l), &g) in splits.iter().zip(leaves).zip(&self.groups) {
            if let Some(m) = margin.get_mut(g as usize) {
                *m += descend(s, l, row);
            }
        }
    }
}

/// One descent of a complete tree with `N` leaves: `log2 N` steps, each a
/// load, a compare and `i = 2i + 1 + right`, the same decision as
/// [`Tree::leaf_value`].
#[inline(always)]
fn descend<const N: usize>(splits: &[Split; N], leaves: &[f32; N], row: &[f32; SLOTS]) -> f32 {
    let mut i = 0usize;
    for _ in 0..N.trailing_zeros() {
        i = step::<N, true>(splits, row, i);
    }
    // After log2 N steps `i` is in N-1 ..= 2N-2, the bottom level.
    leaves[(i + 1) & (N - 1)]
}

/// One level of a descent: from slot `i` to the child `row` takes. With
/// `MISSING = false` the caller vouches that no feature of `row` is NaN.
#[inline(always)]
fn step<const N: usize, const MISSING: bool>(
    splits: &[Split; N],
    row: &[f32; SLOTS],
    i: usize,
) -> usize {
    let s = splits[i & (N - 1)];
    let x = row[usize::from(s.feature)];
    let left = if MISSING {
        (x < s.threshold) | (x.is_nan() & s.default_left)
    } else {
        x < s.threshold
    };
    2 * i + 1 + usize::from(!left)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ensemble::Node;

    /// SplitMix64 (Steele, Lea, Flood 2014): a small seeded test stream.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn value(&mut self) -> f32 {
            (self.below(2001) as f32 - 1000.0) / 100.0
        }
    }

    /// A random tree of depth at most `max_depth`, with leaves at every
    /// level, nodes in a shuffled order (as XGBoost's deleted nodes leave).
    fn random_tree(rng: &mut Rng, max_depth: usize, features: usize, group: usize) -> Tree {
        let mut nodes = Vec::new();
        fn grow(
            rng: &mut Rng,
            nodes: &mut Vec<Node>,
            level: usize,
            max_depth: usize,
            features: usize,
        ) -> u32 {
            let me = nodes.len();
            nodes.push(Node {
                left: LEAF,
                right: LEAF,
                feature: 0,
                value: rng.value(),
                default_left: false,
            });
            if level < max_depth && (level == 0 || rng.below(5) != 0) {
                let feature = rng.below(features as u64) as u32;
                let default_left = rng.below(2) == 0;
                let left = grow(rng, nodes, level + 1, max_depth, features);
                let right = grow(rng, nodes, level + 1, max_depth, features);
                nodes[me] = Node {
                    left,
                    right,
                    feature,
                    value: rng.value(),
                    default_left,
                };
            }
            me as u32
        }
        grow(rng, &mut nodes, 0, max_depth, features);
        Tree { nodes, group }
    }

    fn random_row(rng: &mut Rng, features: usize) -> Vec<f32> {
        (0..features)
            .map(|_| match rng.below(12) {
                0 => f32::NAN,
                1 => f32::INFINITY,
                2 => f32::NEG_INFINITY,
                // Exactly on a threshold's grid, so ties are exercised.
                3 => rng.value(),
                _ => rng.value() + 0.005,
            })
            .collect()
    }

    fn dense_row(row: &[f32]) -> [f32; SLOTS] {
        let mut d = [0f32; SLOTS];
        d[..row.len()].copy_from_slice(row);
        d[PASS_SLOT] = f32::NEG_INFINITY;
        d
    }

    #[test]
    fn the_dense_descent_takes_the_pointer_walks_path_on_random_trees() {
        let mut rng = Rng(7);
        for round in 0..300 {
            let features = 1 + rng.below(40) as usize;
            let max_depth = 1 + round % MAX_DEPTH;
            let groups = 1 + rng.below(3) as usize;
            let trees: Vec<Tree> = (0..1 + rng.below(12) as usize)
                .map(|t| random_tree(&mut rng, max_depth, features, t % groups))
                .collect();
            let dense = Dense::build(&trees, features, groups).expect("shallow enough");
            for _ in 0..50 {
                let row = random_row(&mut rng, features);
                let mut walked = vec![0.5f32; groups];
                for t in &trees {
                    walked[t.group] += t.leaf_value(&row);
                }
                let mut fast = vec![0.5f32; groups];
                dense.add_leaves(&dense_row(&row), &mut fast);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&walked), bits(&fast), "round {round}, row {row:?}");
            }
        }
    }

    #[test]
    fn rows_descending_side_by_side_get_the_same_bits_as_one_at_a_time() {
        let mut rng = Rng(5);
        let mut blocks_with_missing = 0;
        for round in 0..100 {
            let features = 1 + rng.below(30) as usize;
            let trees: Vec<Tree> = (0..1 + rng.below(20) as usize)
                .map(|_| random_tree(&mut rng, 1 + round % MAX_DEPTH, features, 0))
                .collect();
            let dense = Dense::build(&trees, features, 1).unwrap();
            assert!(dense.single_group());
            // Every other round, a block with no missing value (the
            // descent without the default-side term).
            let rows: [[f32; SLOTS]; BLOCK] = std::array::from_fn(|_| {
                let mut row = random_row(&mut rng, features);
                if round % 2 == 0 {
                    row.iter_mut().filter(|x| x.is_nan()).for_each(|x| *x = 0.5);
                }
                dense_row(&row)
            });
            let complete = rows
                .iter()
                .all(|r| !r[..features].iter().any(|x| x.is_nan()));
            assert!(complete || round % 2 == 1);
            blocks_with_missing += usize::from(!complete);
            let mut block = [0.25f32; BLOCK];
            dense.add_leaves_block(&rows, &mut block, !complete);
            for (row, got) in rows.iter().zip(block) {
                let mut one = [0.25f32];
                dense.add_leaves(row, &mut one);
                assert_eq!(one[0].to_bits(), got.to_bits(), "round {round}");
            }
        }
        assert!(
            blocks_with_missing > 30,
            "{blocks_with_missing} blocks with a missing value"
        );
    }

    #[test]
    fn every_fixture_model_predicts_the_same_bits_either_way() {
        // The repository's fixtures, found upwards from whichever crate
        // compiles this file (the sleeper test plugin includes it too).
        let mut dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        while !dir.join("tests/fixtures/models").is_dir() {
            assert!(dir.pop(), "no tests/fixtures/models above the crate");
        }
        let dir = dir.join("tests/fixtures/models");
        let mut rng = Rng(3);
        let mut dense_models = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let Ok(model) = crate::Ensemble::from_json(&std::fs::read(&path).unwrap()) else {
                continue; // the fixtures also hold deliberately broken models
            };
            if !model.is_dense() {
                continue;
            }
            dense_models += 1;
            let n = model.num_features();
            let rows: Vec<f64> = (0..203 * n)
                .map(|_| match rng.below(10) {
                    0 => f64::NAN,
                    _ => (rng.below(4001) as f64 - 1000.0) / 10.0,
                })
                .collect();
            let fast = model.predict(&rows, n).unwrap();
            let walked = model.pointer_walk_only().predict(&rows, n).unwrap();
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&fast), bits(&walked), "{}", path.display());
        }
        assert!(
            dense_models >= 3,
            "only {dense_models} fixture models are dense"
        );
    }

    #[test]
    fn deep_trees_and_wide_rows_keep_the_pointer_walk() {
        let tree_of_depth = |d: usize| {
            // A left spine of `d` splits, each with a leaf on the right.
            let mut nodes = Vec::new();
            for level in 0..d {
                let me = nodes.len() as u32;
                nodes.push(Node {
                    left: me + 2,
                    right: me + 1,
                    feature: 0,
                    value: level as f32,
                    default_left: true,
                });
                nodes.push(Node {
                    left: LEAF,
                    right: LEAF,
                    feature: 0,
                    value: 10.0 + level as f32,
                    default_left: false,
                });
            }
            nodes.push(Node {
                left: LEAF,
                right: LEAF,
                feature: 0,
                value: -1.0,
                default_left: false,
            });
            Tree { nodes, group: 0 }
        };
        let at_limit = tree_of_depth(MAX_DEPTH);
        assert_eq!(depth_of(&at_limit), MAX_DEPTH);
        // A spine of depth 8 has 17 nodes and would take 256 slots: more
        // than the per-node budget, so it keeps the pointer walk.
        assert!(Dense::build(std::slice::from_ref(&at_limit), 4, 1).is_none());
        let shallow = tree_of_depth(2);
        assert!(Dense::build(std::slice::from_ref(&shallow), 4, 1).is_some());
        // A full tree of depth 8 (511 nodes in 256 + 256 slots) is dense.
        let full = {
            let mut nodes = Vec::new();
            for i in 0..511u32 {
                let inner = i < 255;
                nodes.push(Node {
                    left: if inner { 2 * i + 1 } else { LEAF },
                    right: if inner { 2 * i + 2 } else { LEAF },
                    feature: i % 4,
                    value: i as f32,
                    default_left: i % 2 == 0,
                });
            }
            Tree { nodes, group: 0 }
        };
        assert_eq!(depth_of(&full), MAX_DEPTH);
        assert!(Dense::build(std::slice::from_ref(&full), 4, 1).is_some());
        // Many such trees past the overall budget keep the pointer walk
        // rather than asking the sandbox for more memory than it allows.
        let many = vec![full.clone(); MAX_SLOTS / 256 + 1];
        assert!(Dense::build(&many, 4, 1).is_none());
        assert!(Dense::build(&many[..MAX_SLOTS / 256], 4, 1).is_some());
        let over = tree_of_depth(MAX_DEPTH + 1);
        assert!(Dense::build(&[full.clone(), over], 4, 1).is_none());
        assert!(Dense::build(std::slice::from_ref(&full), PASS_SLOT, 1).is_none());
        // A lone leaf is a tree of depth 0: laid out with one pass-through.
        let leaf = Tree {
            nodes: vec![Node {
                left: LEAF,
                right: LEAF,
                feature: 0,
                value: 3.5,
                default_left: false,
            }],
            group: 0,
        };
        let d = Dense::build(&[leaf], 1, 1).unwrap();
        let mut m = [1.0f32];
        d.add_leaves(&dense_row(&[f32::NAN]), &mut m);
        assert_eq!(m, [4.5]);
    }
}
