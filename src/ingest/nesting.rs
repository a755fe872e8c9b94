//! How deep protobuf wire format nests, measured without a schema before prost decodes it.
//! Hand-written: prost's own limit is off in this build (Ballista's plans nest deeper than
//! its 100), and no crate bounds nesting of untrusted protobuf input without decoding it.

/// Whether `bytes`, read as protobuf wire format up to its first byte that is not, nests
/// deeper than `limit`. Every length-delimited field counts as a level (without a schema a
/// string looks like a message) and so does every group, open or closed: an upper bound on
/// the levels a decoder descends into, whatever the schema. Recursion is bounded by `limit`
/// and each byte is read once.
pub fn nests_deeper_than(bytes: &[u8], limit: usize) -> bool {
    deeper(bytes, 0, limit)
}

/// Whether the fields of one message at nesting `depth` reach past `limit`.
fn deeper(mut bytes: &[u8], depth: usize, limit: usize) -> bool {
    let mut groups = 0usize;
    while let Some(key) = varint(&mut bytes) {
        let level = depth + groups + 1;
        match key & 7 {
            0 => {
                if varint(&mut bytes).is_none() {
                    return false;
                }
            }
            1 | 5 => {
                let width = if key & 7 == 1 { 8 } else { 4 };
                let Some(rest) = bytes.get(width..) else {
                    return false;
                };
                bytes = rest;
            }
            2 => {
                let Some(length) = varint(&mut bytes).and_then(|n| usize::try_from(n).ok()) else {
                    return false;
                };
                let Some((payload, rest)) = bytes.split_at_checked(length) else {
                    return false;
                };
                if level > limit || deeper(payload, level, limit) {
                    return true;
                }
                bytes = rest;
            }
            3 => {
                if level > limit {
                    return true;
                }
                groups += 1;
            }
            4 => match groups.checked_sub(1) {
                Some(open) => groups = open,
                None => return false,
            },
            _ => return false,
        }
    }
    false
}

/// Reads a base-128 varint of at most 10 bytes off the front of `bytes`.
fn varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for (index, &byte) in bytes.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            *bytes = &bytes[index + 1..];
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `levels` messages each holding the next as field 1, the innermost empty.
    fn nested_messages(levels: usize) -> Vec<u8> {
        let mut bytes = Vec::new();
        for _ in 0..levels {
            let mut outer = vec![0x0a];
            let mut length = bytes.len() as u64;
            loop {
                let byte = (length & 0x7f) as u8;
                length >>= 7;
                if length == 0 {
                    outer.push(byte);
                    break;
                }
                outer.push(byte | 0x80);
            }
            outer.extend_from_slice(&bytes);
            bytes = outer;
        }
        bytes
    }

    #[test]
    fn messages_count_each_level() {
        assert!(!nests_deeper_than(&nested_messages(100), 100));
        assert!(nests_deeper_than(&nested_messages(101), 100));
        assert!(nests_deeper_than(&nested_messages(100_000), 100));
    }

    #[test]
    fn groups_count_each_level_open_or_closed() {
        assert!(nests_deeper_than(&[0x7b; 200_000], 100));
        let mut closed = vec![0x7b; 101];
        closed.extend([0x7c; 101]);
        assert!(nests_deeper_than(&closed, 100));
        let mut shallow = vec![0x7b; 100];
        shallow.extend([0x7c; 100]);
        assert!(!nests_deeper_than(&shallow, 100));
    }

    #[test]
    fn a_prefix_counts_whatever_follows_it() {
        let mut groups = vec![0x7b; 200_000];
        groups.push(0x07);
        assert!(nests_deeper_than(&groups, 100));
        let mut messages = nested_messages(101);
        messages.extend([0xff; 11]);
        assert!(nests_deeper_than(&messages, 100));
    }

    #[test]
    fn scalars_and_broken_bytes_are_not_nesting() {
        // field 2 varint 150, field 3 fixed64, field 4 fixed32.
        let scalars = [
            0x10, 0x96, 0x01, 0x19, 1, 2, 3, 4, 5, 6, 7, 8, 0x25, 1, 2, 3, 4,
        ];
        assert!(!nests_deeper_than(&scalars, 0));
        assert!(!nests_deeper_than(b"", 0));
        assert!(!nests_deeper_than(&[0xff; 64], 0));
        assert!(!nests_deeper_than(&[0x0a, 0xff, 0xff, 0x03], 0));
        let mut string = vec![0x0a, 5];
        string.extend(b"hello");
        assert!(!nests_deeper_than(&string, 1));
    }
}
