//! Order-preserving composition of byte strings into storage keys.
//!
//! Each component is escaped (`0x00` → `0x00 0xFF`) and terminated by `0x00 0x01`, so the
//! lexicographic order of composed keys equals the tuple order of their components and no
//! component can run into the next.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use crate::error::{KvsError, Result};

/// Appends one escaped, terminated component to `out`.
pub fn push_component(out: &mut Vec<u8>, component: &[u8]) {
    for &b in component {
        if b == 0 {
            out.extend_from_slice(&[0x00, 0xFF]);
        } else {
            out.push(b);
        }
    }
    out.extend_from_slice(&[0x00, 0x01]);
}

/// Appends an escaped component without its terminator: every key whose component starts
/// with `component` sorts at or after the result.
pub fn push_unterminated(out: &mut Vec<u8>, component: &[u8]) {
    for &b in component {
        if b == 0 {
            out.extend_from_slice(&[0x00, 0xFF]);
        } else {
            out.push(b);
        }
    }
}

/// Reads one component from the front of `input`, returning it and the rest.
pub fn pop_component(input: &[u8]) -> Result<(Vec<u8>, &[u8])> {
    let mut out = Vec::new();
    let mut rest = input;
    loop {
        match rest {
            [0x00, 0x01, tail @ ..] => return Ok((out, tail)),
            [0x00, 0xFF, tail @ ..] => {
                out.push(0);
                rest = tail;
            }
            [0x00, ..] => return Err(KvsError::malformed("key component", "bad escape")),
            [b, tail @ ..] => {
                out.push(*b);
                rest = tail;
            }
            [] => return Err(KvsError::malformed("key component", "unterminated")),
        }
    }
}

/// The smallest key greater than every key starting with `prefix`, or `None` if there is none.
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last.wrapping_add(1));
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn compose(parts: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in parts {
            push_component(&mut out, p);
        }
        out
    }

    proptest! {
        #[test]
        fn composition_preserves_tuple_order(a in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..6), 1..4),
                                             b in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..6), 1..4)) {
            prop_assert_eq!(a.cmp(&b), compose(&a).cmp(&compose(&b)));
        }

        #[test]
        fn components_round_trip(parts in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..8), 0..4)) {
            let enc = compose(&parts);
            let mut rest = enc.as_slice();
            let mut got = Vec::new();
            while !rest.is_empty() {
                let (c, r) = pop_component(rest).unwrap();
                got.push(c);
                rest = r;
            }
            prop_assert_eq!(got, parts);
        }

        #[test]
        fn prefix_end_bounds_prefixed_keys(prefix in proptest::collection::vec(any::<u8>(), 1..5), suffix in proptest::collection::vec(any::<u8>(), 0..5)) {
            let mut key = prefix.clone();
            key.extend_from_slice(&suffix);
            if let Some(end) = prefix_end(&prefix) {
                prop_assert!(key < end);
                prop_assert!(prefix <= key);
            }
        }
    }

    #[test]
    fn truncated_component_is_an_error() {
        assert!(pop_component(&[1, 2, 0x00]).is_err());
        assert!(pop_component(&[1, 2]).is_err());
        assert!(pop_component(&[0x00, 0x07]).is_err());
    }
}
