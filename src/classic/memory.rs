//! Physical address ranges and the top-down placement of segments in them.
//!
//! Both kexec-tools and the kernel's own loader put each segment at the
//! highest address that fits; doing the same keeps the low memory (where
//! firmware tables and the crash kernel's control pages live) untouched.

use std::fmt;

pub const PAGE_SIZE: u64 = 4096;
pub const MIB: u64 = 1 << 20;

/// A half-open physical range `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Range {
    pub start: u64,
    pub end: u64,
}

impl Range {
    pub fn new(start: u64, end: u64) -> Range {
        Range { start, end }
    }

    /// From an inclusive end, as `/sys/firmware/memmap` and `/proc/iomem`
    /// write them; `None` for an empty or inverted range.
    pub fn inclusive(start: u64, last: u64) -> Option<Range> {
        (last >= start).then(|| Range {
            start,
            end: last.saturating_add(1),
        })
    }

    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    pub fn overlaps(&self, o: &Range) -> bool {
        self.start < o.end && o.start < self.end
    }

    pub fn contains_range(&self, o: &Range) -> bool {
        self.start <= o.start && o.end <= self.end
    }

    pub fn intersect(&self, o: &Range) -> Option<Range> {
        let r = Range {
            start: self.start.max(o.start),
            end: self.end.min(o.end),
        };
        (!r.is_empty()).then_some(r)
    }

    /// What is left of `self` without `o`: zero, one or two ranges.
    pub fn minus(&self, o: &Range) -> Vec<Range> {
        if !self.overlaps(o) {
            return vec![*self];
        }
        let mut out = Vec::new();
        if self.start < o.start {
            out.push(Range {
                start: self.start,
                end: o.start,
            });
        }
        if o.end < self.end {
            out.push(Range {
                start: o.end,
                end: self.end,
            });
        }
        out
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}-{:#x}", self.start, self.end.saturating_sub(1))
    }
}

pub fn align_up(v: u64, align: u64) -> Option<u64> {
    let mask = align.checked_sub(1)?;
    Some(v.checked_add(mask)? & !mask)
}

pub fn align_down(v: u64, align: u64) -> u64 {
    v & !(align.saturating_sub(1))
}

pub fn page_align(v: u64) -> Option<u64> {
    align_up(v, PAGE_SIZE)
}

/// Free memory as a sorted list of disjoint ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FreeList {
    ranges: Vec<Range>,
}

impl FreeList {
    pub fn new(ranges: impl IntoIterator<Item = Range>) -> FreeList {
        let mut v: Vec<Range> = ranges.into_iter().filter(|r| !r.is_empty()).collect();
        v.sort();
        let mut merged: Vec<Range> = Vec::with_capacity(v.len());
        for r in v {
            match merged.last_mut() {
                Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
                _ => merged.push(r),
            }
        }
        FreeList { ranges: merged }
    }

    pub fn ranges(&self) -> &[Range] {
        &self.ranges
    }

    /// Marks `r` as used.
    pub fn remove(&mut self, r: Range) {
        self.ranges = self.ranges.iter().flat_map(|f| f.minus(&r)).collect();
    }

    /// True if all of `r` is free.
    pub fn is_free(&self, r: &Range) -> bool {
        self.ranges.iter().any(|f| f.contains_range(r))
    }

    /// Takes exactly `r` if it is free.
    pub fn take_exact(&mut self, r: Range) -> bool {
        if self.is_free(&r) {
            self.remove(r);
            true
        } else {
            false
        }
    }

    /// Takes the highest `size` bytes aligned to `align` (a power of two)
    /// inside `[min, max_end)`, and returns their start.
    pub fn take_top_down(&mut self, size: u64, align: u64, min: u64, max_end: u64) -> Option<u64> {
        if size == 0 || !align.is_power_of_two() {
            return None;
        }
        let found = self.ranges.iter().rev().find_map(|f| {
            let lo = f.start.max(min);
            let hi = f.end.min(max_end);
            let start = align_down(hi.checked_sub(size)?, align);
            (start >= lo && hi > lo).then_some(start)
        })?;
        self.remove(Range {
            start: found,
            end: found + size,
        });
        Some(found)
    }

    /// Size of the largest free range, for error messages.
    pub fn largest(&self) -> u64 {
        self.ranges.iter().map(Range::len).max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minus_splits_and_trims() {
        let r = Range::new(10, 20);
        assert_eq!(
            r.minus(&Range::new(12, 15)),
            vec![Range::new(10, 12), Range::new(15, 20)]
        );
        assert_eq!(r.minus(&Range::new(0, 15)), vec![Range::new(15, 20)]);
        assert_eq!(r.minus(&Range::new(0, 30)), vec![]);
        assert_eq!(r.minus(&Range::new(20, 30)), vec![r]);
    }

    #[test]
    fn top_down_takes_the_highest_aligned_fit() {
        let mut f = FreeList::new([
            Range::new(0x100000, 0x9f00000),
            Range::new(0x10000000, 0x10300000),
        ]);
        // Fits in the upper range, aligned down from its end.
        assert_eq!(
            f.take_top_down(0x200000, 0x200000, 0, u64::MAX),
            Some(0x10000000)
        );
        // The upper range's remaining 1 MiB is too small for 2 MiB: falls back.
        assert_eq!(
            f.take_top_down(0x200000, 0x200000, 0, u64::MAX),
            Some(0x9c00000)
        );
        // max_end is respected.
        assert_eq!(f.take_top_down(0x1000, 0x1000, 0, 0x200000), Some(0x1ff000));
        // min is respected: nothing of 16 MiB above 0x9000000.
        assert_eq!(
            f.take_top_down(0x1000000, 0x1000, 0x9000000, u64::MAX),
            None
        );
        assert!(!f.is_free(&Range::new(0x10000000, 0x10001000)));
        assert!(f.is_free(&Range::new(0x10200000, 0x10300000)));
    }

    #[test]
    fn new_merges_overlaps() {
        let f = FreeList::new([
            Range::new(5, 10),
            Range::new(0, 6),
            Range::new(10, 12),
            Range::new(20, 20),
        ]);
        assert_eq!(f.ranges(), &[Range::new(0, 12)]);
    }
}
