//! Native Poseidon over the BLS12-381 scalar field: width 3 (rate 2, capacity 1), S-box x^5,
//! 8 full and 57 partial rounds, constants from the reference Grain LFSR (see `POSEIDON.md`).
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use bls12_381::Scalar;
use std::sync::OnceLock;

/// State width `t` (rate 2 + capacity 1).
pub const WIDTH: usize = 3;
/// Elements absorbed per permutation.
pub const RATE: usize = 2;
/// Number of full rounds `R_F` (half before, half after the partial rounds).
pub const FULL_ROUNDS: usize = 8;
/// Number of partial rounds `R_P`.
pub const PARTIAL_ROUNDS: usize = 57;
/// Bit length `n` of the field modulus, as fed to the Grain LFSR.
pub const FIELD_BITS: u16 = 255;
/// Bytes packed into one field element by [`hash_bytes`] (31 · 8 = 248 < 255 bits, always canonical).
pub const BYTES_PER_ELEMENT: usize = 31;

const TOTAL_ROUNDS: usize = FULL_ROUNDS + PARTIAL_ROUNDS;
const HALF_FULL: usize = FULL_ROUNDS / 2;

/// The permutation's constants: one round-constant row per round and the MDS matrix.
#[derive(Clone, Debug)]
pub struct Params {
    /// `round_constants[r][i]` is added to state element `i` at the start of round `r`.
    pub round_constants: [[Scalar; WIDTH]; TOTAL_ROUNDS],
    /// The Cauchy MDS matrix; the linear layer is `state' = mds · state`.
    pub mds: [[Scalar; WIDTH]; WIDTH],
}

impl Params {
    /// Whether round `r` applies the S-box to every element (full) or only to element 0 (partial).
    pub fn is_full_round(r: usize) -> bool {
        r < HALF_FULL || r >= HALF_FULL.saturating_add(PARTIAL_ROUNDS)
    }

    /// Total number of rounds `R_F + R_P`.
    pub fn rounds() -> usize {
        TOTAL_ROUNDS
    }
}

/// The Grain LFSR of the Poseidon reference parameter generator (80-bit state, taps 62, 51, 38,
/// 23, 13, 0), seeded with the instance description and with 160 initial outputs discarded.
struct Grain {
    bits: [bool; 80],
    pos: usize,
}

impl Grain {
    fn new(field: u16, sbox: u16, n: u16, t: u16, r_f: u16, r_p: u16) -> Self {
        let mut init = Vec::with_capacity(80);
        let mut push = |value: u16, width: u32| {
            for i in (0..width).rev() {
                init.push((value >> i) & 1 == 1);
            }
        };
        push(field, 2);
        push(sbox, 4);
        push(n, 12);
        push(t, 12);
        push(r_f, 10);
        push(r_p, 10);
        let mut bits = [true; 80];
        for (slot, bit) in bits.iter_mut().zip(init) {
            *slot = bit;
        }
        let mut grain = Grain { bits, pos: 0 };
        for _ in 0..160 {
            grain.clock();
        }
        grain
    }

    /// One LFSR step; the state is a ring buffer whose oldest bit sits at `pos`.
    fn clock(&mut self) -> bool {
        let at = |k: usize| {
            self.bits
                .get(self.pos.wrapping_add(k) % 80)
                .copied()
                .unwrap_or(false)
        };
        let new = at(62) ^ at(51) ^ at(38) ^ at(23) ^ at(13) ^ at(0);
        if let Some(slot) = self.bits.get_mut(self.pos) {
            *slot = new;
        }
        self.pos = self.pos.wrapping_add(1) % 80;
        new
    }

    /// Self-shrinking output: draw pairs, emit the second bit when the first is 1.
    fn next_bit(&mut self) -> bool {
        loop {
            let first = self.clock();
            let second = self.clock();
            if first {
                return second;
            }
        }
    }

    /// `n` output bits, most significant first, as a 32-byte big-endian integer.
    fn next_be_bytes(&mut self, n: usize) -> [u8; 32] {
        let mut out = [0u8; 32];
        let skip = 256usize.saturating_sub(n);
        for i in skip..256 {
            if self.next_bit() {
                if let Some(byte) = out.get_mut(i / 8) {
                    *byte |= 0x80 >> (i % 8);
                }
            }
        }
        out
    }

    /// A field element by rejection sampling (values ≥ p are discarded), as for round constants.
    fn next_field_rejecting(&mut self) -> Scalar {
        loop {
            let mut le = self.next_be_bytes(FIELD_BITS.into());
            le.reverse();
            if let Some(s) = Option::<Scalar>::from(Scalar::from_bytes(&le)) {
                return s;
            }
        }
    }

    /// A field element reduced modulo p (no rejection), as the reference does for the MDS seeds.
    fn next_field_reduced(&mut self) -> Scalar {
        let mut wide = [0u8; 64];
        let mut le = self.next_be_bytes(FIELD_BITS.into());
        le.reverse();
        for (w, b) in wide.iter_mut().zip(le) {
            *w = b;
        }
        Scalar::from_bytes_wide(&wide)
    }
}

fn generate() -> Params {
    let mut grain = Grain::new(
        1,
        0,
        FIELD_BITS,
        WIDTH as u16,
        FULL_ROUNDS as u16,
        PARTIAL_ROUNDS as u16,
    );
    let mut round_constants = [[Scalar::zero(); WIDTH]; TOTAL_ROUNDS];
    for row in round_constants.iter_mut() {
        for c in row.iter_mut() {
            *c = grain.next_field_rejecting();
        }
    }
    let mds = loop {
        let mut seeds = [Scalar::zero(); 2 * WIDTH];
        for s in seeds.iter_mut() {
            *s = grain.next_field_reduced();
        }
        let distinct = seeds
            .iter()
            .enumerate()
            .all(|(i, a)| seeds.iter().skip(i.saturating_add(1)).all(|b| a != b));
        if !distinct {
            continue;
        }
        let (xs, ys) = seeds.split_at(WIDTH);
        let mut m = [[Scalar::zero(); WIDTH]; WIDTH];
        let mut ok = true;
        for (row, x) in m.iter_mut().zip(xs) {
            for (cell, y) in row.iter_mut().zip(ys) {
                match Option::<Scalar>::from(x.add(y).invert()) {
                    Some(inv) => *cell = inv,
                    None => ok = false,
                }
            }
        }
        if ok {
            break m;
        }
    };
    Params {
        round_constants,
        mds,
    }
}

/// The process-wide constants, generated once on first use.
pub fn params() -> &'static Params {
    static PARAMS: OnceLock<Params> = OnceLock::new();
    PARAMS.get_or_init(generate)
}

/// x^5.
pub fn sbox(x: Scalar) -> Scalar {
    let x2 = x.square();
    x2.square().mul(&x)
}

fn mix(mds: &[[Scalar; WIDTH]; WIDTH], state: &[Scalar; WIDTH]) -> [Scalar; WIDTH] {
    let mut out = [Scalar::zero(); WIDTH];
    for (o, row) in out.iter_mut().zip(mds) {
        *o = row
            .iter()
            .zip(state)
            .fold(Scalar::zero(), |acc, (m, s)| acc.add(&m.mul(s)));
    }
    out
}

/// The Poseidon permutation, in place.
pub fn permute(state: &mut [Scalar; WIDTH]) {
    let p = params();
    for (r, rc) in p.round_constants.iter().enumerate() {
        for (s, c) in state.iter_mut().zip(rc) {
            *s = s.add(c);
        }
        if Params::is_full_round(r) {
            for s in state.iter_mut() {
                *s = sbox(*s);
            }
        } else if let Some(first) = state.first_mut() {
            *first = sbox(*first);
        }
        *state = mix(&p.mds, state);
    }
}

/// The initial capacity element: `domain · 2^64 + input_len`, so the domain and the number of
/// absorbed elements are both bound before anything is absorbed.
pub fn initial_capacity(domain: u64, input_len: u64) -> Scalar {
    let two64 = Scalar::from(u64::MAX).add(&Scalar::one());
    Scalar::from(domain)
        .mul(&two64)
        .add(&Scalar::from(input_len))
}

/// Number of permutations a sponge call over `len` elements performs (at least one).
pub fn blocks_for(len: usize) -> usize {
    len.div_ceil(RATE).max(1)
}

/// Sponge hash of field elements under a domain tag: capacity initialised with
/// [`initial_capacity`], the input zero-padded to a multiple of the rate (at least one block),
/// absorbed by addition into the two rate elements, one permutation per block; the output is
/// the first rate element. Injective framing: the length is in the capacity, so zero padding is
/// unambiguous.
pub fn hash_elements(domain: u64, inputs: &[Scalar]) -> Scalar {
    let mut state = [
        initial_capacity(domain, inputs.len() as u64),
        Scalar::zero(),
        Scalar::zero(),
    ];
    let mut chunks = inputs.chunks(RATE);
    for _ in 0..blocks_for(inputs.len()) {
        let chunk = chunks.next().unwrap_or(&[]);
        for (s, x) in state.iter_mut().skip(1).zip(chunk) {
            *s = s.add(x);
        }
        permute(&mut state);
    }
    state.get(1).copied().unwrap_or_else(Scalar::zero)
}

/// The field element whose big-endian encoding is `chunk` (at most 31 bytes, so always < p).
pub fn chunk_to_scalar(chunk: &[u8]) -> Scalar {
    let mut le = [0u8; 32];
    for (dst, src) in le.iter_mut().zip(chunk.iter().rev()) {
        *dst = *src;
    }
    Option::<Scalar>::from(Scalar::from_bytes(&le)).unwrap_or_else(Scalar::zero)
}

/// The element sequence [`hash_bytes`] absorbs: `[len, chunk_0, …, chunk_k]` with `chunk_i` the
/// big-endian integer of `bytes[31·i .. min(31·i+31, len)]`.
pub fn bytes_to_elements(bytes: &[u8]) -> Vec<Scalar> {
    let mut out = Vec::with_capacity(bytes.len().div_ceil(BYTES_PER_ELEMENT).saturating_add(1));
    out.push(Scalar::from(bytes.len() as u64));
    out.extend(bytes.chunks(BYTES_PER_ELEMENT).map(chunk_to_scalar));
    out
}

/// Hash of a byte string under a domain tag: [`hash_elements`] over [`bytes_to_elements`].
pub fn hash_bytes(domain: u64, bytes: &[u8]) -> Scalar {
    hash_elements(domain, &bytes_to_elements(bytes))
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
mod tests {
    use super::*;
    use ff::PrimeField;

    pub(crate) fn from_hex(h: &str) -> Scalar {
        let mut be = hex::decode(h.trim_start_matches("0x")).unwrap();
        while be.len() < 32 {
            be.insert(0, 0);
        }
        be.reverse();
        Scalar::from_bytes(&be.try_into().unwrap()).unwrap()
    }

    /// First and last round constants and the MDS matrix as published for
    /// `generate_parameters_grain.sage 1 0 255 3 8 57 0x73ed…0001`.
    #[test]
    fn constants_match_reference_generator_output() {
        let p = params();
        assert_eq!(
            p.round_constants[0][0],
            from_hex("0x6c4ffa723eaf1a7bf74905cc7dae4ca9ff4a2c3bc81d42e09540d1f250910880")
        );
        assert_eq!(
            p.round_constants[0][1],
            from_hex("0x54dd837eccf180c92c2f53a3476e45a156ab69a403b6b9fdfd8dd970fddcdd9a")
        );
        assert_eq!(
            p.round_constants[TOTAL_ROUNDS - 1][WIDTH - 1],
            from_hex("0x57b33094aeff828377897b56e1c432978d07c668ef25a36bc5e2e835aaeff725")
        );
        assert_eq!(
            p.mds[0][0],
            from_hex("0x3d955d6c02fe4d7cb500e12f2b55eff668a7b4386bd27413766713c93f2acfcd")
        );
        assert_eq!(
            p.mds[0][1],
            from_hex("0x3798866f4e6058035dcf8addb2cf1771fac234bcc8fc05d6676e77e797f224bf")
        );
        assert_eq!(
            p.mds[2][2],
            from_hex("0x569e2c206119e89455852059f707370e2c1fc9721f6c50991cedbbf782daef54")
        );
    }

    /// The reference implementation's published test vector for poseidonperm_x5_255_3.
    #[test]
    fn permutation_matches_reference_test_vector() {
        let mut s = [Scalar::zero(), Scalar::one(), Scalar::from(2u64)];
        permute(&mut s);
        assert_eq!(
            s,
            [
                from_hex("0x28ce19420fc246a05553ad1e8c98f5c9d67166be2c18e9e4cb4b4e317dd2a78a"),
                from_hex("0x51f3e312c95343a896cfd8945ea82ba956c1118ce9b9859b6ea56637b4b1ddc4"),
                from_hex("0x3b2b69139b235626a0bfb56c9527ae66a7bf486ad8c11c14d1da0c69bbe0f79a"),
            ]
        );
    }

    #[test]
    fn mds_is_invertible_and_constants_canonical() {
        let m = params().mds;
        let det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
            - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
        assert_ne!(det, Scalar::zero());
        // Every square submatrix of a Cauchy matrix is non-singular (MDS); check the 2x2 minors.
        for (r0, r1) in [(0, 1), (0, 2), (1, 2)] {
            for (c0, c1) in [(0, 1), (0, 2), (1, 2)] {
                assert_ne!(
                    m[r0][c0] * m[r1][c1] - m[r0][c1] * m[r1][c0],
                    Scalar::zero()
                );
            }
        }
        for row in params().round_constants.iter() {
            for c in row {
                // `from_repr` accepts only canonical (< p) encodings.
                assert!(bool::from(Scalar::from_repr(c.to_repr()).is_some()));
            }
        }
    }

    /// log2 of the binomial coefficient C(n, k).
    fn log2_binomial(n: u64, k: u64) -> f64 {
        (0..k)
            .map(|i| ((n - i) as f64 / (i + 1) as f64).log2())
            .sum()
    }

    /// The security inequalities of the reference `calc_round_numbers.py` (statistical,
    /// interpolation, three Gröbner-basis bounds, and the 2023/537 bound) for x^5, t = 3, M = 128.
    fn secure(r_f: u64, r_p: u64) -> bool {
        let log2p = 254.857_f64; // log2 of the BLS12-381 scalar modulus
        let (t, alpha, m, n) = (3.0_f64, 5.0_f64, 128.0_f64, 255.0_f64);
        let log_a = |x: f64| x.ln() / alpha.ln();
        let rp = r_p as f64;
        let r1 = if m <= ((log2p - (alpha - 1.0) / 2.0).floor()) * (t + 1.0) {
            6.0
        } else {
            10.0
        };
        let r2 = 1.0 + (log_a(2.0) * m.min(n)).ceil() + log_a(t).ceil() - rp;
        let r3 = log_a(2.0) * m.min(log2p) - rp;
        let r4 = t - 1.0 + log_a(2.0) * (m / (t + 1.0)).min(log2p / 2.0) - rp;
        let r5 = (t - 2.0 + m / (2.0 * alpha.log2()) - rp) / (t - 1.0);
        let r_max = [r1, r2, r3, r4, r5]
            .iter()
            .map(|x| x.ceil())
            .fold(f64::MIN, f64::max);
        let r_temp = 1u64; // floor(t / 3)
        let over = (r_f - 1) * 3 + r_p + r_temp + r_temp * (r_f / 2) + r_p + 5;
        let under = r_temp * (r_f / 2) + r_p + 5;
        let gb4 = (2.0 * log2_binomial(over, under)).ceil();
        r_f as f64 >= r_max && gb4 >= m
    }

    #[test]
    fn round_numbers_meet_128_bit_security_with_margin() {
        // The chosen numbers, with the paper's margin removed (R_F − 2, R_P / 1.075), still
        // satisfy every inequality…
        assert!(secure(FULL_ROUNDS as u64 - 2, 53));
        assert!((53.0_f64 * 1.075).ceil() as usize == PARTIAL_ROUNDS);
        // …and the minimum the inequalities allow (R_F = 6, R_P = 52, i.e. 8/56 with margin) is
        // at most what we use: 57 keeps one extra partial round, as in the paper's table.
        let min_rp = (1..200).find(|&rp| secure(6, rp)).unwrap();
        assert_eq!(min_rp, 52);
        assert!((min_rp as f64 * 1.075).ceil() as usize <= PARTIAL_ROUNDS);
        assert!(!secure(6, 51));
        assert!(!secure(4, 57));
    }

    /// Values cross-checked against an independent Python implementation of the same spec.
    #[test]
    fn sponge_known_answers() {
        assert_eq!(
            hash_elements(7, &[]),
            from_hex("0x36a39e902ecc0327571176e21b7ae0f1935f8401e53b468fc574501902f79e00")
        );
        assert_eq!(
            hash_elements(
                7,
                &[Scalar::from(1u64), Scalar::from(2u64), Scalar::from(3u64)]
            ),
            from_hex("0x7364fe76d2638c1f6d6bcba9d8d67fd96b176d6222eb3d42f0199723ccc14020")
        );
        assert_eq!(
            hash_bytes(9, b"ab"),
            from_hex("0x4cc23f67e32619be98b51f9339794443e7e1c28896bcb9d194c54dffe9b62d02")
        );
        assert_eq!(
            hash_bytes(9, b"ab\0"),
            from_hex("0x3157c1628331dc96d76dda3714c01aa3d3c6a9888b5372f7a7e497da9b4db498")
        );
        let hundred: Vec<u8> = (0..100u8).collect();
        assert_eq!(
            hash_bytes(9, &hundred),
            from_hex("0x6b52f7376f6e418a3e7e5eb57199ae89d27d3ad596ef3dec531883f78100eb11")
        );
    }

    #[test]
    fn length_and_padding_are_bound() {
        let one = Scalar::one();
        assert_ne!(
            hash_elements(1, &[one]),
            hash_elements(1, &[one, Scalar::zero()])
        );
        assert_ne!(hash_elements(1, &[]), hash_elements(1, &[Scalar::zero()]));
        assert_ne!(hash_bytes(1, b"ab"), hash_bytes(1, b"ab\0"));
        assert_ne!(hash_bytes(1, b""), hash_bytes(1, b"\0"));
        assert_ne!(hash_bytes(1, b"x"), hash_bytes(2, b"x"));
    }

    #[test]
    fn packing_is_big_endian_31_byte_chunks() {
        let bytes: Vec<u8> = (1..=40u8).collect();
        let els = bytes_to_elements(&bytes);
        assert_eq!(els.len(), 3);
        assert_eq!(els[0], Scalar::from(40u64));
        let two64 = Scalar::from(u64::MAX) + Scalar::one();
        assert_eq!(
            els[2],
            Scalar::from(0x20u64) * two64 + Scalar::from(0x2122_2324_2526_2728u64)
        );
        let int9 = [3u8, 0, 0, 0, 0, 0, 0, 0, 42];
        assert_eq!(
            bytes_to_elements(&int9)[1],
            Scalar::from(3u64) * two64 + Scalar::from(42u64)
        );
    }
}
