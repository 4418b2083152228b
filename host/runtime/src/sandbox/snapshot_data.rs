//! Counting what a snapshot will hold while the instance's state is read,
//! before wizer builds anything from it.
//!
//! Wizer turns each linear memory into data segments: one range per run of
//! non-zero bytes within a Wasm page (its bookkeeping, about 48 bytes of
//! host memory per range while it sorts and merges them), runs at most four
//! zero bytes apart merged into one segment, and the bytes of every segment
//! copied out and written into the new component. A memory that `init`
//! filled densely therefore costs the host several copies of itself before
//! the finished snapshot meets the `[component]` size cap and is refused.
//!
//! [`DataCount`] replays that segmentation over each memory as it is read
//! (the memory is borrowed from the instance, nothing is copied): the bytes
//! the segments will hold (a lower bound of the snapshot's size) and the
//! ranges wizer's first pass will record. [`DataBudget`] is what the host
//! allows; the reader stops at the first memory page that passes it, so a
//! refused snapshot never costs more than the instance's own memory.

/// Wizer's page: the granularity of its first pass (64 KiB Wasm pages).
pub(super) const WIZER_PAGE: usize = 64 << 10;

/// Runs at most this many zero bytes apart end up in one data segment
/// (wizer's `MIN_ACTIVE_SEGMENT_OVERHEAD`).
const MERGE_GAP: u64 = 4;

/// Host bytes per range of wizer's first pass (a `DataSegmentRange`, its
/// sorted copy and the merged list's capacity), for the budget's message.
pub(super) const BYTES_PER_RANGE: u64 = 48;

/// What the host lets the memories of one snapshot hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct DataBudget {
    /// Bytes of data segments: the component size cap, since a snapshot
    /// holds at least its segments.
    pub(super) max_bytes: u64,
    /// Ranges wizer records before merging (its bookkeeping).
    pub(super) max_ranges: u64,
}

impl DataBudget {
    /// The budget under a component size cap of `max_component_bytes`:
    /// segments of at most that many bytes, and wizer's bookkeeping of at
    /// most three times it (a sixteenth of the cap in ranges).
    pub(super) fn for_component_cap(max_component_bytes: u64) -> DataBudget {
        DataBudget {
            max_bytes: max_component_bytes,
            max_ranges: (max_component_bytes / 16).max(1),
        }
    }
}

/// What the memories read so far will become, counted as wizer will build
/// it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct DataCount {
    /// Bytes the data segments will hold: non-zero runs plus the gaps of at
    /// most four zero bytes merged between them.
    pub(super) bytes: u64,
    /// Ranges of wizer's first pass: non-zero runs, split at page
    /// boundaries.
    pub(super) ranges: u64,
}

/// Which limit of the budget a memory passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OverBudget {
    /// The data segments would hold more than `max_bytes`.
    Bytes,
    /// Wizer would record more than `max_ranges` ranges.
    Ranges,
}

impl DataCount {
    /// Adds one memory, page by page, and stops at the first page after
    /// which the count passes `budget`.
    pub(super) fn add_memory(
        &mut self,
        memory: &[u8],
        budget: &DataBudget,
    ) -> Result<(), OverBudget> {
        // Zero bytes since the last run of this memory; `None` before its
        // first run (a gap is merged only between two runs).
        let mut gap: Option<u64> = None;
        for page in memory.chunks(WIZER_PAGE) {
            // A run never continues across a page: wizer starts a new range.
            let mut in_run = false;
            let mut i = 0;
            while i < page.len() {
                // Eight bytes at a time where they are all zero, or all
                // non-zero inside a run: the common cases of a heap.
                if let Some(word) = page.get(i..i + 8) {
                    let w = u64::from_le_bytes(word.try_into().expect("eight bytes"));
                    if w == 0 {
                        in_run = false;
                        gap = gap.map(|g| g + 8);
                        i += 8;
                        continue;
                    }
                    if in_run && !has_zero_byte(w) {
                        self.bytes += 8;
                        i += 8;
                        continue;
                    }
                }
                if page[i] == 0 {
                    in_run = false;
                    gap = gap.map(|g| g + 1);
                } else {
                    if !in_run {
                        self.ranges += 1;
                        if let Some(g) = gap
                            && g <= MERGE_GAP
                        {
                            self.bytes += g;
                        }
                        in_run = true;
                    }
                    gap = Some(0);
                    self.bytes += 1;
                }
                i += 1;
            }
            if self.bytes > budget.max_bytes {
                return Err(OverBudget::Bytes);
            }
            if self.ranges > budget.max_ranges {
                return Err(OverBudget::Ranges);
            }
        }
        Ok(())
    }
}

/// Whether any byte of `w` is zero.
fn has_zero_byte(w: u64) -> bool {
    const LOW: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    w.wrapping_sub(LOW) & !w & HIGH != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOMY: DataBudget = DataBudget {
        max_bytes: u64::MAX,
        max_ranges: u64::MAX,
    };

    fn count(memory: &[u8]) -> DataCount {
        let mut c = DataCount::default();
        c.add_memory(memory, &ROOMY).unwrap();
        c
    }

    /// Wizer's segmentation, written out the slow way: ranges of non-zero
    /// bytes per page, then runs at most four zero bytes apart merged.
    fn reference(memory: &[u8]) -> DataCount {
        let mut ranges = Vec::new();
        for (p, page) in memory.chunks(WIZER_PAGE).enumerate() {
            let base = p * WIZER_PAGE;
            let mut start = None;
            for (i, b) in page.iter().enumerate() {
                match (start, *b != 0) {
                    (None, true) => start = Some(base + i),
                    (Some(s), false) => {
                        ranges.push(s..base + i);
                        start = None;
                    }
                    _ => {}
                }
            }
            if let Some(s) = start {
                ranges.push(s..base + page.len());
            }
        }
        let mut merged: Vec<std::ops::Range<usize>> = Vec::new();
        for r in &ranges {
            match merged.last_mut() {
                Some(last) if r.start - last.end <= MERGE_GAP as usize => last.end = r.end,
                _ => merged.push(r.clone()),
            }
        }
        DataCount {
            bytes: merged.iter().map(|r| r.len() as u64).sum(),
            ranges: ranges.len() as u64,
        }
    }

    #[test]
    fn the_count_replays_wizers_segmentation() {
        let mut patterns: Vec<Vec<u8>> = vec![
            vec![],
            vec![0; 100],
            vec![7; 100],
            // Gaps of 1..=6 zero bytes: merged up to 4, split from 5.
            (0..600).map(|i| u8::from(i % 7 == 0)).collect(),
            (0..600).map(|i| u8::from(i % 5 == 0)).collect(),
            (0..600).map(|i| u8::from(i % 6 == 0)).collect(),
            // A dense run across a page boundary is two ranges, one segment.
            vec![9; WIZER_PAGE + 100],
        ];
        // Pseudo-random bytes, some pages dense and some sparse.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let random: Vec<u8> = (0..3 * WIZER_PAGE + 13)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let dense = (i / WIZER_PAGE).is_multiple_of(2);
                if dense || x.is_multiple_of(9) {
                    x as u8
                } else {
                    0
                }
            })
            .collect();
        patterns.push(random);
        for p in &patterns {
            assert_eq!(count(p), reference(p), "pattern of {} bytes", p.len());
        }
        assert_eq!(count(&[1, 0, 0, 0, 0, 1]).bytes, 6);
        assert_eq!(count(&[1, 0, 0, 0, 0, 0, 1]).bytes, 2);
    }

    #[test]
    fn counting_stops_at_the_first_page_past_the_budget() {
        let dense = vec![0xA5u8; 10 * WIZER_PAGE];
        let budget = DataBudget {
            max_bytes: (3 * WIZER_PAGE) as u64,
            max_ranges: u64::MAX,
        };
        let mut c = DataCount::default();
        assert_eq!(c.add_memory(&dense, &budget), Err(OverBudget::Bytes));
        assert_eq!(
            c.bytes,
            (4 * WIZER_PAGE) as u64,
            "stopped after page 4 of 10"
        );
        // One non-zero byte in six: few bytes, but a range each.
        let sparse: Vec<u8> = (0..4 * WIZER_PAGE)
            .map(|i| u8::from(i.is_multiple_of(6)))
            .collect();
        let budget = DataBudget::for_component_cap(64 << 10);
        let mut c = DataCount::default();
        assert_eq!(c.add_memory(&sparse, &budget), Err(OverBudget::Ranges));
        assert!(c.bytes < budget.max_bytes, "{c:?}");
    }

    #[test]
    fn memories_add_up() {
        let budget = DataBudget {
            max_bytes: 150,
            max_ranges: u64::MAX,
        };
        let mut c = DataCount::default();
        c.add_memory(&[3; 100], &budget).unwrap();
        assert_eq!(c.add_memory(&[3; 100], &budget), Err(OverBudget::Bytes));
    }
}
