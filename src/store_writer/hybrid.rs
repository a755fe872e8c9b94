//! Parquet's RLE/bit-packing hybrid encoding, for dictionary indices and definition levels,
//! written from runs of equal values.

use datafusion::arrow::buffer::NullBuffer;

/// Bits needed to write `max`: 0 for 0.
pub(super) fn bits_for(max: u32) -> u8 {
    (32 - max.leading_zeros()) as u8
}

/// How many values from the start of `values` equal `value`.
pub(super) fn run_length(values: &[i32], value: i32) -> usize {
    values
        .iter()
        .position(|v| *v != value)
        .unwrap_or(values.len())
}

/// The definition levels of `nulls`' rows (1 valid, 0 null) as runs.
fn level_runs(nulls: &NullBuffer) -> Vec<(u32, usize)> {
    let mut runs = Vec::new();
    let mut next = 0;
    for (start, end) in nulls.valid_slices() {
        if start > next {
            runs.push((0, start - next));
        }
        runs.push((1, end - start));
        next = end;
    }
    if nulls.len() > next {
        runs.push((0, nulls.len() - next));
    }
    runs
}

/// Appends the definition levels of `rows` rows (flat, optional: 1 holds a value, 0 is null) as
/// a version 1 data page frames them: their byte length, then their encoding. `nulls` is `None`
/// when every row holds a value.
pub(super) fn definition_levels(nulls: Option<&NullBuffer>, rows: usize, out: &mut Vec<u8>) {
    let mut levels = Vec::new();
    match nulls {
        Some(nulls) => encode_hybrid(&level_runs(nulls), 1, &mut levels),
        None => write_run(1, rows, 1, &mut levels),
    }
    out.extend_from_slice(&(levels.len() as u32).to_le_bytes());
    out.extend_from_slice(&levels);
}

/// Reads runs of values in pieces of a given number of values.
pub(super) struct RunCursor<'a> {
    runs: &'a [(u32, usize)],
    /// Values of `runs[0]` already taken.
    taken: usize,
}

impl<'a> RunCursor<'a> {
    pub(super) fn new(runs: &'a [(u32, usize)]) -> RunCursor<'a> {
        RunCursor { runs, taken: 0 }
    }

    /// Replaces `out` with the runs of the next `count` values.
    pub(super) fn take(&mut self, mut count: usize, out: &mut Vec<(u32, usize)>) {
        out.clear();
        while count > 0 {
            let Some(&(value, length)) = self.runs.first() else {
                break;
            };
            let piece = (length - self.taken).min(count);
            out.push((value, piece));
            count -= piece;
            self.taken += piece;
            if self.taken == length {
                self.runs = &self.runs[1..];
                self.taken = 0;
            }
        }
    }
}

/// Appends the values of `runs` (value, count) in Parquet's RLE/bit-packing hybrid encoding
/// with `bit_width` bits a value: runs of 8 or more equal values as RLE runs, the rest
/// bit-packed in groups of 8 (the last group padded with zeros, which a reader skips by the
/// page's value count).
pub(super) fn encode_hybrid(runs: &[(u32, usize)], bit_width: u8, out: &mut Vec<u8>) {
    let mut literals: Vec<u32> = Vec::new();
    for &(value, count) in runs {
        // A run first fills the pending literals up to a whole group, if it stays a run then.
        let fill = (8 - literals.len() % 8) % 8;
        if count >= fill + 8 {
            literals.extend(std::iter::repeat_n(value, fill));
            flush_literals(&mut literals, bit_width, out);
            write_run(value, count - fill, bit_width, out);
        } else {
            literals.extend(std::iter::repeat_n(value, count));
        }
    }
    flush_literals(&mut literals, bit_width, out);
}

/// One RLE run: `count` times `value`.
fn write_run(value: u32, count: usize, bit_width: u8, out: &mut Vec<u8>) {
    write_varint((count as u64) << 1, out);
    let width = usize::from(bit_width).div_ceil(8);
    out.extend_from_slice(&value.to_le_bytes()[..width]);
}

/// Writes `literals` as bit-packed runs of at most 63 groups of 8 values, padding the last group.
fn flush_literals(literals: &mut Vec<u32>, bit_width: u8, out: &mut Vec<u8>) {
    if literals.is_empty() {
        return;
    }
    literals.resize(literals.len().div_ceil(8) * 8, 0);
    for run in literals.chunks(63 * 8) {
        write_varint(((run.len() / 8) as u64) << 1 | 1, out);
        let mut bits: u64 = 0;
        let mut filled = 0u32;
        for value in run {
            bits |= u64::from(*value) << filled;
            filled += u32::from(bit_width);
            while filled >= 8 {
                out.push(bits as u8);
                bits >>= 8;
                filled -= 8;
            }
        }
        debug_assert_eq!(filled, 0, "8 values fill whole bytes");
    }
    literals.clear();
}

fn write_varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hybrid_runs_and_literals() {
        // Ten 3s: one RLE run of 10, value in one byte.
        let mut out = Vec::new();
        encode_hybrid(&[(3, 10)], 2, &mut out);
        assert_eq!(out, [10 << 1, 3]);
        // 1, 2 then eight 0s: the run gives 6 values to fill the literal group, leaving only 2,
        // so everything is one group of bit-packed literals (then a padded second group).
        let mut out = Vec::new();
        encode_hybrid(&[(1, 1), (2, 1), (0, 8)], 2, &mut out);
        assert_eq!(out, [(2 << 1) | 1, 0b0000_1001, 0, 0, 0]);
        // 1, 2 then twenty 0s: 6 zeros fill the group, 14 stay a run.
        let mut out = Vec::new();
        encode_hybrid(&[(1, 1), (2, 1), (0, 20)], 2, &mut out);
        assert_eq!(out, [(1 << 1) | 1, 0b0000_1001, 0, 14 << 1, 0]);
    }

    #[test]
    fn runs_are_taken_in_pieces_across_their_ends() {
        let runs = [(4, 5), (7, 1), (2, 10)];
        let mut cursor = RunCursor::new(&runs);
        let mut piece = Vec::new();
        cursor.take(3, &mut piece);
        assert_eq!(piece, [(4, 3)]);
        cursor.take(6, &mut piece);
        assert_eq!(piece, [(4, 2), (7, 1), (2, 3)]);
        cursor.take(100, &mut piece);
        assert_eq!(piece, [(2, 7)]);
        cursor.take(1, &mut piece);
        assert!(piece.is_empty());
    }

    #[test]
    fn levels_of_nulls_as_runs() {
        let nulls = NullBuffer::from(vec![false, false, true, true, true, false, true, false]);
        assert_eq!(level_runs(&nulls), [(0, 2), (1, 3), (0, 1), (1, 1), (0, 1)]);
        assert_eq!(level_runs(&NullBuffer::from(vec![true; 4])), [(1, 4)]);
    }

    #[test]
    fn bit_widths() {
        assert_eq!(bits_for(0), 0);
        assert_eq!(bits_for(1), 1);
        assert_eq!(bits_for(2), 2);
        assert_eq!(bits_for(255), 8);
        assert_eq!(bits_for(256), 9);
    }
}
