//! Poseidon and dHash as bellman constraint gadgets, equal to the native functions in
//! [`crate::poseidon`] and [`crate::dhash`].
//!
//! Values are carried as [`Elem`]: a linear combination with its witness value. Linear layers
//! (round constants, MDS) cost nothing; each x^5 S-box costs 3 constraints, so one permutation
//! costs (3·R_F + R_P)·3 = 243 constraints ([`CONSTRAINTS_PER_PERMUTATION`]).

use crate::poseidon::{self, Params, BYTES_PER_ELEMENT, RATE, WIDTH};
use bellman::{ConstraintSystem, Index, LinearCombination, SynthesisError, Variable};
use bls12_381::Scalar;
use ff::{Field, PrimeField};

/// R1CS constraints of one Poseidon permutation.
pub const CONSTRAINTS_PER_PERMUTATION: usize = 243;

fn one_var() -> Variable {
    Variable::new_unchecked(Index::Input(0))
}

fn same(a: &Variable, b: &Variable) -> bool {
    a.get_unchecked() == b.get_unchecked()
}

/// A linear combination of circuit variables (the constant 1 included) with its value, if known.
#[derive(Clone, Debug)]
pub struct Elem {
    terms: Vec<(Variable, Scalar)>,
    value: Option<Scalar>,
}

impl Elem {
    /// The constant `c`.
    pub fn constant(c: Scalar) -> Self {
        let terms = if c.is_zero_vartime() {
            Vec::new()
        } else {
            vec![(one_var(), c)]
        };
        Elem {
            terms,
            value: Some(c),
        }
    }

    /// A single variable with its value.
    pub fn from_var(var: Variable, value: Option<Scalar>) -> Self {
        Elem {
            terms: vec![(var, Scalar::ONE)],
            value,
        }
    }

    /// Allocates a private variable.
    pub fn alloc<CS: ConstraintSystem<Scalar>>(
        mut cs: CS,
        value: Option<Scalar>,
    ) -> Result<Self, SynthesisError> {
        let var = cs.alloc(
            || "value",
            || value.ok_or(SynthesisError::AssignmentMissing),
        )?;
        Ok(Self::from_var(var, value))
    }

    /// Allocates a public input.
    pub fn input<CS: ConstraintSystem<Scalar>>(
        mut cs: CS,
        value: Option<Scalar>,
    ) -> Result<Self, SynthesisError> {
        let var = cs.alloc_input(
            || "input",
            || value.ok_or(SynthesisError::AssignmentMissing),
        )?;
        Ok(Self::from_var(var, value))
    }

    /// The witness value, when known (it is not during parameter generation).
    pub fn value(&self) -> Option<Scalar> {
        self.value
    }

    /// As a bellman linear combination.
    pub fn lc(&self) -> LinearCombination<Scalar> {
        self.terms
            .iter()
            .fold(LinearCombination::zero(), |lc, (v, c)| lc + (*c, *v))
    }

    fn push_term(&mut self, var: Variable, coeff: Scalar) {
        if let Some(t) = self.terms.iter_mut().find(|(v, _)| same(v, &var)) {
            t.1 += coeff;
        } else {
            self.terms.push((var, coeff));
        }
    }

    /// `self + other`, with like terms merged so repeated linear layers stay small.
    pub fn add(&self, other: &Elem) -> Elem {
        self.add_scaled(other, Scalar::ONE)
    }

    /// `self + k · other`.
    pub fn add_scaled(&self, other: &Elem, k: Scalar) -> Elem {
        let mut out = self.clone();
        for (v, c) in &other.terms {
            out.push_term(*v, *c * k);
        }
        out.terms.retain(|(_, c)| !c.is_zero_vartime());
        out.value = match (self.value, other.value) {
            (Some(a), Some(b)) => Some(a + b * k),
            _ => None,
        };
        out
    }

    /// `k · self`.
    pub fn scale(&self, k: Scalar) -> Elem {
        Elem::constant(Scalar::ZERO).add_scaled(self, k)
    }

    /// `self + c`.
    pub fn add_const(&self, c: Scalar) -> Elem {
        self.add(&Elem::constant(c))
    }

    /// `self − other`.
    pub fn sub(&self, other: &Elem) -> Elem {
        self.add_scaled(other, -Scalar::ONE)
    }

    /// The constant value, if this combination involves no variable but the constant one.
    pub fn as_constant(&self) -> Option<Scalar> {
        if self.terms.iter().all(|(v, _)| same(v, &one_var())) {
            Some(self.terms.iter().fold(Scalar::ZERO, |acc, (_, c)| acc + c))
        } else {
            None
        }
    }

    /// `self · other`: one constraint, or none when either side is a constant.
    pub fn mul<CS: ConstraintSystem<Scalar>>(
        &self,
        mut cs: CS,
        other: &Elem,
    ) -> Result<Elem, SynthesisError> {
        if let Some(c) = self.as_constant() {
            return Ok(other.scale(c));
        }
        if let Some(c) = other.as_constant() {
            return Ok(self.scale(c));
        }
        let value = self.value.zip(other.value).map(|(a, b)| a * b);
        let out = Elem::alloc(cs.namespace(|| "product"), value)?;
        cs.enforce(|| "a * b = c", |_| self.lc(), |_| other.lc(), |_| out.lc());
        Ok(out)
    }

    /// Enforces `self == other` (one constraint).
    pub fn enforce_equal<CS: ConstraintSystem<Scalar>>(&self, mut cs: CS, other: &Elem) {
        cs.enforce(
            || "equal",
            |_| self.lc() - &other.lc(),
            |lc| lc + one_var(),
            |lc| lc,
        );
    }
}

/// Allocates a boolean (one constraint: `b · (1 − b) = 0`).
pub fn alloc_bit<CS: ConstraintSystem<Scalar>>(
    mut cs: CS,
    value: Option<bool>,
) -> Result<Elem, SynthesisError> {
    let bit = Elem::alloc(
        cs.namespace(|| "bit"),
        value.map(|b| if b { Scalar::ONE } else { Scalar::ZERO }),
    )?;
    cs.enforce(
        || "boolean",
        |_| bit.lc(),
        |lc| lc + one_var() - &bit.lc(),
        |lc| lc,
    );
    Ok(bit)
}

/// Allocates `bits` booleans whose little-endian weighted sum is returned: a value known to lie
/// in `[0, 2^bits)` (a range check costing `bits` constraints).
pub fn alloc_range<CS: ConstraintSystem<Scalar>>(
    mut cs: CS,
    value: Option<u64>,
    bits: usize,
) -> Result<Elem, SynthesisError> {
    let mut acc = Elem::constant(Scalar::ZERO);
    let mut weight = Scalar::ONE;
    for i in 0..bits {
        let b = alloc_bit(
            cs.namespace(|| format!("bit {i}")),
            value.map(|v| i < 64 && (v >> i) & 1 == 1),
        )?;
        acc = acc.add_scaled(&b, weight);
        weight = weight.double();
    }
    Ok(acc)
}

/// Enforces that `x` (any linear combination) lies in `[0, 2^bits)` by decomposing it.
pub fn enforce_range<CS: ConstraintSystem<Scalar>>(
    mut cs: CS,
    x: &Elem,
    bits: usize,
) -> Result<(), SynthesisError> {
    let v = x.value().map(scalar_low_u64);
    let decomposed = alloc_range(cs.namespace(|| "bits"), v, bits)?;
    decomposed.enforce_equal(cs.namespace(|| "recompose"), x);
    Ok(())
}

/// The low 64 bits of a field element's canonical integer.
pub fn scalar_low_u64(s: Scalar) -> u64 {
    let bytes = s.to_repr();
    let mut low = [0u8; 8];
    low.copy_from_slice(&bytes.as_ref()[..8]);
    u64::from_le_bytes(low)
}

fn sbox<CS: ConstraintSystem<Scalar>>(mut cs: CS, x: &Elem) -> Result<Elem, SynthesisError> {
    let x2 = x.mul(cs.namespace(|| "x2"), x)?;
    let x4 = x2.mul(cs.namespace(|| "x4"), &x2)?;
    x4.mul(cs.namespace(|| "x5"), x)
}

/// The Poseidon permutation in-circuit.
pub fn permute<CS: ConstraintSystem<Scalar>>(
    mut cs: CS,
    state: [Elem; WIDTH],
) -> Result<[Elem; WIDTH], SynthesisError> {
    let p = poseidon::params();
    let mut state = state;
    for (r, rc) in p.round_constants.iter().enumerate() {
        for (s, c) in state.iter_mut().zip(rc) {
            *s = s.add_const(*c);
        }
        let full = Params::is_full_round(r);
        for (i, s) in state.iter_mut().enumerate() {
            if full || i == 0 {
                *s = sbox(cs.namespace(|| format!("round {r} sbox {i}")), s)?;
            }
        }
        let mixed: Vec<Elem> = p
            .mds
            .iter()
            .map(|row| {
                row.iter()
                    .zip(state.iter())
                    .fold(Elem::constant(Scalar::ZERO), |acc, (m, s)| {
                        acc.add_scaled(s, *m)
                    })
            })
            .collect();
        for (s, m) in state.iter_mut().zip(mixed) {
            *s = m;
        }
    }
    Ok(state)
}

/// [`poseidon::hash_elements`] in-circuit, for a fixed number of inputs.
pub fn hash_elements<CS: ConstraintSystem<Scalar>>(
    mut cs: CS,
    domain: u64,
    inputs: &[Elem],
) -> Result<Elem, SynthesisError> {
    let cap = Elem::constant(poseidon::initial_capacity(domain, inputs.len() as u64));
    let states = absorb(cs.namespace(|| "absorb"), cap, inputs)?;
    states
        .last()
        .map(|s| s[1].clone())
        .ok_or(SynthesisError::Unsatisfiable)
}

/// Runs the sponge over `inputs` from the given capacity element; returns the state after each
/// block.
fn absorb<CS: ConstraintSystem<Scalar>>(
    mut cs: CS,
    cap: Elem,
    inputs: &[Elem],
) -> Result<Vec<[Elem; WIDTH]>, SynthesisError> {
    let zero = Elem::constant(Scalar::ZERO);
    let mut state = [cap, zero.clone(), zero.clone()];
    let mut out = Vec::new();
    let blocks = poseidon::blocks_for(inputs.len());
    for b in 0..blocks {
        let chunk = inputs.get(b * RATE..).unwrap_or(&[]);
        for (i, s) in state.iter_mut().skip(1).enumerate() {
            if let Some(x) = chunk.get(i) {
                *s = s.add(x);
            }
        }
        state = permute(cs.namespace(|| format!("block {b}")), state)?;
        out.push(state.clone());
    }
    Ok(out)
}

/// A byte string inside a circuit as the elements [`poseidon::bytes_to_elements`] produces,
/// zero-padded to a fixed capacity: `[len, chunk_0, …, chunk_{K−1}]` with `K = ⌈capacity/31⌉`.
#[derive(Clone, Debug)]
pub struct PaddedBytes {
    /// `len` followed by the `K` chunk elements (zeros past the real chunks).
    pub elems: Vec<Elem>,
    /// One-hot selector: `count[k] = 1` iff the string has exactly `k` chunks.
    count: Vec<Elem>,
}

impl PaddedBytes {
    /// Number of chunk elements for a byte capacity.
    pub fn chunks_for(capacity: usize) -> usize {
        capacity.div_ceil(BYTES_PER_ELEMENT)
    }

    /// The padded element vector of `bytes` for `capacity` (what the circuit allocates).
    pub fn native_elems(bytes: &[u8], capacity: usize) -> Vec<Scalar> {
        let mut out = poseidon::bytes_to_elements(bytes);
        out.resize(Self::chunks_for(capacity) + 1, Scalar::ZERO);
        out
    }

    /// Allocates a private byte string of at most `capacity` bytes. Constraints: the chunk-count
    /// selector is one-hot and chunks past the count are zero. (The packing of each chunk is not
    /// range-checked: a witness whose elements are not a byte packing cannot hash to a real
    /// record's dHash without a Poseidon collision.)
    pub fn alloc<CS: ConstraintSystem<Scalar>>(
        mut cs: CS,
        bytes: Option<&[u8]>,
        capacity: usize,
    ) -> Result<Self, SynthesisError> {
        let k_max = Self::chunks_for(capacity);
        if bytes.is_some_and(|b| b.len() > capacity) {
            return Err(SynthesisError::Unsatisfiable);
        }
        let native = bytes.map(|b| Self::native_elems(b, capacity));
        let n_chunks = bytes.map(|b| b.len().div_ceil(BYTES_PER_ELEMENT));
        let mut elems = Vec::with_capacity(k_max + 1);
        for i in 0..=k_max {
            let v = native.as_ref().and_then(|n| n.get(i).copied());
            elems.push(Elem::alloc(cs.namespace(|| format!("elem {i}")), v)?);
        }
        let mut count = Vec::with_capacity(k_max + 1);
        let mut sum = Elem::constant(Scalar::ZERO);
        for k in 0..=k_max {
            let bit = alloc_bit(
                cs.namespace(|| format!("count {k}")),
                n_chunks.map(|n| n == k),
            )?;
            sum = sum.add(&bit);
            count.push(bit);
        }
        sum.enforce_equal(cs.namespace(|| "one-hot"), &Elem::constant(Scalar::ONE));
        // chunk j (element j+1) must be zero when the count is ≤ j.
        let mut at_most = Elem::constant(Scalar::ZERO);
        for j in 0..k_max {
            at_most = at_most.add(&count[j]);
            let prod = elems[j + 1].mul(cs.namespace(|| format!("pad {j}")), &at_most)?;
            prod.enforce_equal(
                cs.namespace(|| format!("pad {j} zero")),
                &Elem::constant(Scalar::ZERO),
            );
        }
        Ok(PaddedBytes { elems, count })
    }

    /// A public constant byte string (e.g. a fixed column name).
    pub fn constant(bytes: &[u8]) -> Self {
        let elems: Vec<Elem> = poseidon::bytes_to_elements(bytes)
            .into_iter()
            .map(Elem::constant)
            .collect();
        let k = elems.len() - 1;
        let count = (0..=k)
            .map(|i| Elem::constant(if i == k { Scalar::ONE } else { Scalar::ZERO }))
            .collect();
        PaddedBytes { elems, count }
    }

    /// [`poseidon::hash_bytes`] of the string: every block of the padded sponge is computed and
    /// the state after block `⌈(1 + k)/2⌉` is selected, `k` being the real chunk count.
    pub fn hash<CS: ConstraintSystem<Scalar>>(
        &self,
        mut cs: CS,
        domain: u64,
    ) -> Result<Elem, SynthesisError> {
        // capacity = domain·2^64 + (1 + k), with k = Σ k·count[k]
        let mut cap = Elem::constant(poseidon::initial_capacity(domain, 1));
        for (k, c) in self.count.iter().enumerate() {
            cap = cap.add_scaled(c, Scalar::from(k as u64));
        }
        let states = absorb(cs.namespace(|| "absorb"), cap, &self.elems)?;
        let mut out = Elem::constant(Scalar::ZERO);
        for (b, state) in states.iter().enumerate() {
            // selector: counts k whose element total 1 + k needs exactly b + 1 blocks
            let mut sel = Elem::constant(Scalar::ZERO);
            for (k, c) in self.count.iter().enumerate() {
                if poseidon::blocks_for(k + 1) == b + 1 {
                    sel = sel.add(c);
                }
            }
            if sel.terms.is_empty() {
                continue;
            }
            let picked = sel.mul(cs.namespace(|| format!("select {b}")), &state[1])?;
            out = out.add(&picked);
        }
        Ok(out)
    }
}

/// A canonical non-negative integer column value (`0x03` ‖ u64 big-endian, 9 bytes) with its
/// 64-bit range-checked integer.
#[derive(Clone, Debug)]
pub struct U64Value {
    /// The integer, constrained to `[0, 2^64)`.
    pub value: Elem,
    /// The byte string's sponge elements: `[9, 3·2^64 + value]`.
    pub elems: Vec<Elem>,
}

impl U64Value {
    /// Allocates a private u64 value (64 constraints for the range check).
    pub fn alloc<CS: ConstraintSystem<Scalar>>(
        mut cs: CS,
        v: Option<u64>,
    ) -> Result<Self, SynthesisError> {
        let value = alloc_range(cs.namespace(|| "range"), v, 64)?;
        let tag = Scalar::from(3u64) * poseidon::initial_capacity(1, 0);
        let elems = vec![Elem::constant(Scalar::from(9u64)), value.add_const(tag)];
        Ok(U64Value { value, elems })
    }

    /// [`poseidon::hash_bytes`] of the 9-byte encoding (one permutation).
    pub fn hash<CS: ConstraintSystem<Scalar>>(
        &self,
        cs: CS,
        domain: u64,
    ) -> Result<Elem, SynthesisError> {
        hash_elements(cs, domain, &self.elems)
    }
}

/// [`crate::dhash::dhash_scalar`] in-circuit, from already hashed fields: the format hash, the
/// key hash, and per column the (name hash, value hash).
pub fn dhash_from_hashes<CS: ConstraintSystem<Scalar>>(
    cs: CS,
    format: Elem,
    key: Elem,
    columns: &[(Elem, Elem)],
) -> Result<Elem, SynthesisError> {
    let mut els = vec![
        format,
        key,
        Elem::constant(Scalar::from(columns.len() as u64)),
    ];
    for (n, v) in columns {
        els.push(n.clone());
        els.push(v.clone());
    }
    hash_elements(cs, crate::dhash::DOMAIN_RECORD, &els)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dhash::{
        dhash_scalar, DOMAIN_COLUMN_NAME, DOMAIN_COLUMN_VALUE, DOMAIN_FORMAT, DOMAIN_KEY,
    };
    use bellman::gadgets::test::TestConstraintSystem;
    use proptest::prelude::*;

    fn scalar_from(seed: u64) -> Scalar {
        use rand_core::SeedableRng;
        Scalar::random(rand_chacha::ChaCha8Rng::seed_from_u64(seed))
    }

    #[test]
    fn permutation_costs_243_constraints() {
        let mut cs = TestConstraintSystem::<Scalar>::new();
        let state = [0u64, 1, 2].map(|i| {
            Elem::alloc(cs.namespace(|| format!("in {i}")), Some(Scalar::from(i))).unwrap()
        });
        let before = cs.num_constraints();
        let out = permute(cs.namespace(|| "perm"), state).unwrap();
        assert_eq!(cs.num_constraints() - before, CONSTRAINTS_PER_PERMUTATION);
        let mut native = [Scalar::ZERO, Scalar::ONE, Scalar::from(2u64)];
        poseidon::permute(&mut native);
        for (o, n) in out.iter().zip(native) {
            assert_eq!(o.value(), Some(n));
        }
        assert!(cs.is_satisfied());
    }

    #[test]
    fn constants_cost_nothing() {
        let mut cs = TestConstraintSystem::<Scalar>::new();
        let h = PaddedBytes::constant(b"ODOMETER")
            .hash(cs.namespace(|| "c"), 4)
            .unwrap();
        assert_eq!(cs.num_constraints(), 0);
        assert_eq!(h.as_constant(), Some(poseidon::hash_bytes(4, b"ODOMETER")));
    }

    #[test]
    fn padded_bytes_reject_nonzero_padding() {
        let mut cs = TestConstraintSystem::<Scalar>::new();
        let pb = PaddedBytes::alloc(cs.namespace(|| "s"), Some(b"hello"), 70).unwrap();
        let h = pb.hash(cs.namespace(|| "h"), 5).unwrap();
        assert_eq!(h.value(), Some(poseidon::hash_bytes(5, b"hello")));
        assert!(cs.is_satisfied());
        // a prover who smuggles data into the padding is caught
        cs.set("s/elem 2/value", Scalar::from(7u64));
        assert!(!cs.is_satisfied());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(12))]
        #[test]
        fn gadget_permutation_equals_native(a in any::<u64>(), b in any::<u64>(), c in any::<u64>()) {
            let vals = [scalar_from(a), scalar_from(b), scalar_from(c)];
            let mut cs = TestConstraintSystem::<Scalar>::new();
            let state = [0, 1, 2].map(|i| Elem::alloc(cs.namespace(|| format!("in {i}")), Some(vals[i])).unwrap());
            let out = permute(cs.namespace(|| "perm"), state).unwrap();
            let mut native = vals;
            poseidon::permute(&mut native);
            for (o, n) in out.iter().zip(native) {
                prop_assert_eq!(o.value(), Some(n));
            }
            prop_assert!(cs.is_satisfied());
        }

        #[test]
        fn gadget_hash_bytes_equals_native(bytes in proptest::collection::vec(any::<u8>(), 0..=100), domain in 0u64..10) {
            let mut cs = TestConstraintSystem::<Scalar>::new();
            let pb = PaddedBytes::alloc(cs.namespace(|| "s"), Some(&bytes), 100).unwrap();
            let h = pb.hash(cs.namespace(|| "h"), domain).unwrap();
            prop_assert_eq!(h.value(), Some(poseidon::hash_bytes(domain, &bytes)));
            prop_assert!(cs.is_satisfied());
            let c = PaddedBytes::constant(&bytes).hash(cs.namespace(|| "c"), domain).unwrap();
            prop_assert_eq!(c.value(), Some(poseidon::hash_bytes(domain, &bytes)));
        }

        #[test]
        fn gadget_dhash_equals_native(
            format in proptest::collection::vec(any::<u8>(), 0..=20),
            key in proptest::collection::vec(any::<u8>(), 0..=40),
            value in proptest::collection::vec(any::<u8>(), 0..=62),
            odo in any::<u64>(),
        ) {
            let odo_bytes: Vec<u8> = std::iter::once(3u8).chain(odo.to_be_bytes()).collect();
            let native = dhash_scalar(&format, &key, &[(b"DATA", &value), (b"ODOMETER", &odo_bytes)]);
            let mut cs = TestConstraintSystem::<Scalar>::new();
            let f = PaddedBytes::alloc(cs.namespace(|| "f"), Some(&format), 20).unwrap();
            let k = PaddedBytes::alloc(cs.namespace(|| "k"), Some(&key), 40).unwrap();
            let v = PaddedBytes::alloc(cs.namespace(|| "v"), Some(&value), 62).unwrap();
            let o = U64Value::alloc(cs.namespace(|| "o"), Some(odo)).unwrap();
            let cols = vec![
                (PaddedBytes::constant(b"DATA").hash(cs.namespace(|| "n0"), DOMAIN_COLUMN_NAME).unwrap(),
                 v.hash(cs.namespace(|| "v0"), DOMAIN_COLUMN_VALUE).unwrap()),
                (PaddedBytes::constant(b"ODOMETER").hash(cs.namespace(|| "n1"), DOMAIN_COLUMN_NAME).unwrap(),
                 o.hash(cs.namespace(|| "v1"), DOMAIN_COLUMN_VALUE).unwrap()),
            ];
            let fh = f.hash(cs.namespace(|| "fh"), DOMAIN_FORMAT).unwrap();
            let kh = k.hash(cs.namespace(|| "kh"), DOMAIN_KEY).unwrap();
            let d = dhash_from_hashes(cs.namespace(|| "d"), fh, kh, &cols).unwrap();
            prop_assert_eq!(d.value(), Some(native));
            prop_assert!(cs.is_satisfied());
        }
    }
}
