//! Length-prefixed, versioned frames: `len: u32 BE | version: u8 | kind: u8 | body`, where
//! `len` counts version, kind and body. Decoding is incremental (feed bytes, take frames) and
//! refuses frames above the configured limit before buffering them.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

/// The frame format version this code speaks.
pub const VERSION: u8 = 1;

/// Default largest frame (a 64 MiB shard plus headers).
pub const DEFAULT_MAX_FRAME: usize = (64 << 20) + (1 << 16);

/// Errors of the frame layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The announced frame exceeds the limit.
    #[error("frame of {size} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// Announced size.
        size: usize,
        /// Limit.
        limit: usize,
    },
    /// The frame is shorter than its fixed header.
    #[error("frame too short")]
    TooShort,
    /// The peer speaks another version.
    #[error("unsupported frame version {0}")]
    Version(u8),
}

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Message kind (protocol-defined).
    pub kind: u8,
    /// Message body.
    pub body: Vec<u8>,
}

impl Frame {
    /// Serialized frame; fails if it would exceed `limit`.
    pub fn encode(&self, limit: usize) -> Result<Vec<u8>, FrameError> {
        let len = self.body.len().checked_add(2).ok_or(FrameError::TooLarge {
            size: usize::MAX,
            limit,
        })?;
        if len > limit {
            return Err(FrameError::TooLarge { size: len, limit });
        }
        let len32 = u32::try_from(len).map_err(|_| FrameError::TooLarge { size: len, limit })?;
        let mut out = Vec::with_capacity(len.saturating_add(4));
        out.extend_from_slice(&len32.to_be_bytes());
        out.push(VERSION);
        out.push(self.kind);
        out.extend_from_slice(&self.body);
        Ok(out)
    }
}

/// Incremental decoder.
#[derive(Debug)]
pub struct Decoder {
    buf: Vec<u8>,
    limit: usize,
}

impl Decoder {
    /// A decoder refusing frames above `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            buf: Vec::new(),
            limit,
        }
    }

    /// Appends received bytes.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// How many more bytes the next frame needs (0 if one is complete), after checking its
    /// announced length against the limit.
    pub fn needed(&self) -> Result<usize, FrameError> {
        let Some(head) = self.buf.get(..4) else {
            return Ok(4usize.saturating_sub(self.buf.len()));
        };
        let mut l = [0u8; 4];
        l.copy_from_slice(head);
        let len = usize::try_from(u32::from_be_bytes(l)).map_err(|_| FrameError::TooShort)?;
        if len > self.limit {
            return Err(FrameError::TooLarge {
                size: len,
                limit: self.limit,
            });
        }
        if len < 2 {
            return Err(FrameError::TooShort);
        }
        Ok(len.saturating_add(4).saturating_sub(self.buf.len()))
    }

    /// The next complete frame, if any.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if self.buf.len() < 4 || self.needed()? > 0 {
            return Ok(None);
        }
        let mut l = [0u8; 4];
        l.copy_from_slice(self.buf.get(..4).ok_or(FrameError::TooShort)?);
        let len = usize::try_from(u32::from_be_bytes(l)).map_err(|_| FrameError::TooShort)?;
        let end = len.saturating_add(4);
        let frame: Vec<u8> = self.buf.drain(..end).skip(4).collect();
        match frame.as_slice() {
            [v, _, ..] if *v != VERSION => Err(FrameError::Version(*v)),
            [_, kind, body @ ..] => Ok(Some(Frame {
                kind: *kind,
                body: body.to_vec(),
            })),
            _ => Err(FrameError::TooShort),
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn frames_round_trip_in_any_split(frames in proptest::collection::vec((any::<u8>(), proptest::collection::vec(any::<u8>(), 0..300)), 1..5),
                                          chunk in 1usize..64) {
            let mut wire = Vec::new();
            for (kind, body) in &frames {
                wire.extend(Frame { kind: *kind, body: body.clone() }.encode(1024).unwrap());
            }
            let mut d = Decoder::new(1024);
            let mut got = Vec::new();
            for piece in wire.chunks(chunk) {
                d.feed(piece);
                while let Some(f) = d.next_frame().unwrap() {
                    got.push((f.kind, f.body));
                }
            }
            prop_assert_eq!(got, frames);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let mut d = Decoder::new(64);
            d.feed(&bytes);
            for _ in 0..4 {
                if !matches!(d.next_frame(), Ok(Some(_))) { break; }
            }
        }
    }

    #[test]
    fn oversized_and_foreign_frames_are_refused() {
        assert!(matches!(
            Frame {
                kind: 1,
                body: vec![0; 100]
            }
            .encode(50),
            Err(FrameError::TooLarge { .. })
        ));
        let mut d = Decoder::new(50);
        d.feed(&1000u32.to_be_bytes());
        assert!(matches!(
            d.next_frame(),
            Err(FrameError::TooLarge {
                size: 1000,
                limit: 50
            })
        ));
        let mut d = Decoder::new(50);
        d.feed(&[0, 0, 0, 3, 9, 1, 0]);
        assert_eq!(d.next_frame(), Err(FrameError::Version(9)));
        let mut d = Decoder::new(50);
        d.feed(&[0, 0, 0, 1, 1]);
        assert_eq!(d.next_frame(), Err(FrameError::TooShort));
    }
}
