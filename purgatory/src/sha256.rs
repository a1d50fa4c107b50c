//! SHA-256 (FIPS 180-4), small and free of SIMD, for the purgatory.
//!
//! The purgatory runs with SSE disabled (CR4 has no OSFXSR after kexec), so it
//! cannot use the `sha2` crate, whose code may pick SHA-NI/SSE paths, nor the
//! precompiled `memcpy` of `core`. This implementation uses only integer
//! operations and indexes that the compiler can prove in bounds, so that the
//! purgatory image links without any of `core`'s panic machinery. It is the
//! same source the host tests compare against the `sha2` crate.

const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

const H0: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// Streaming SHA-256.
#[derive(Clone)]
pub struct Sha256 {
    state: [u32; 8],
    block: [u8; 64],
    /// Bytes waiting in `block`, always < 64.
    pending: usize,
    /// Total bytes hashed so far.
    total: u64,
}

impl Default for Sha256 {
    fn default() -> Self {
        Self::new()
    }
}

impl Sha256 {
    pub const fn new() -> Self {
        Sha256 {
            state: H0,
            block: [0; 64],
            pending: 0,
            total: 0,
        }
    }

    /// Hashes `len` bytes starting at `ptr`.
    ///
    /// # Safety
    /// `ptr..ptr+len` must be readable. A raw pointer (not a slice) because
    /// the purgatory hashes physical memory by address.
    pub unsafe fn update_raw(&mut self, ptr: *const u8, len: usize) {
        let mut i = 0usize;
        self.total = self.total.wrapping_add(len as u64);
        // Fill a partial block first.
        while self.pending != 0 && i < len {
            self.block[self.pending & 63] = *ptr.add(i);
            self.pending += 1;
            i += 1;
            if self.pending == 64 {
                compress(&mut self.state, self.block.as_ptr());
                self.pending = 0;
            }
        }
        // Whole blocks straight from memory.
        while len - i >= 64 {
            compress(&mut self.state, ptr.add(i));
            i += 64;
        }
        // Keep the tail.
        while i < len {
            self.block[self.pending & 63] = *ptr.add(i);
            self.pending += 1;
            i += 1;
        }
    }

    /// Hashes a byte slice.
    pub fn update(&mut self, data: &[u8]) {
        // SAFETY: a slice is readable over its whole length.
        unsafe { self.update_raw(data.as_ptr(), data.len()) }
    }

    /// Hashes `count` zero bytes, the part of a segment the kernel zero-fills
    /// (`memsz - bufsz`), without needing a buffer for it.
    pub fn update_zeros(&mut self, mut count: u64) {
        let zeros = [0u8; 64];
        while count > 0 {
            let n = if count > 64 { 64 } else { count as usize };
            // SAFETY: n <= 64 = zeros.len().
            unsafe { self.update_raw(zeros.as_ptr(), n) };
            count -= n as u64;
        }
    }

    /// Pads and returns the digest.
    pub fn finalize(mut self) -> [u8; 32] {
        let bits = self.total.wrapping_mul(8);
        let one = [0x80u8];
        self.update(&one);
        let zeros = [0u8; 64];
        let pad = (64 + 56 - self.pending) % 64;
        // SAFETY: pad < 64 = zeros.len().
        unsafe { self.update_raw(zeros.as_ptr(), pad) };
        let len = bits.to_be_bytes();
        self.update(&len);
        let mut out = [0u8; 32];
        let mut i = 0;
        while i < 8 {
            let w = self.state[i].to_be_bytes();
            out[4 * i] = w[0];
            out[4 * i + 1] = w[1];
            out[4 * i + 2] = w[2];
            out[4 * i + 3] = w[3];
            i += 1;
        }
        out
    }
}

/// One-shot digest of a slice.
pub fn digest(data: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(data);
    h.finalize()
}

/// One round: `d += t1; h = t1 + t2`, with the caller rotating the names
/// instead of moving eight registers (the classic 8-way unrolled form).
macro_rules! round {
    ($a:ident, $b:ident, $c:ident, $d:ident, $e:ident, $f:ident, $g:ident, $h:ident, $w:expr, $k:expr) => {
        let t1 = $h
            .wrapping_add($e.rotate_right(6) ^ $e.rotate_right(11) ^ $e.rotate_right(25))
            .wrapping_add(($e & $f) ^ (!$e & $g))
            .wrapping_add($k)
            .wrapping_add($w);
        let t2 = ($a.rotate_right(2) ^ $a.rotate_right(13) ^ $a.rotate_right(22))
            .wrapping_add(($a & $b) ^ ($a & $c) ^ ($b & $c));
        $d = $d.wrapping_add(t1);
        $h = t1.wrapping_add(t2);
    };
}

/// Message schedule word `t` (t >= 16), computed in place in the rolling
/// 16-word window.
#[inline(always)]
fn expand(w: &mut [u32; 16], t: usize) -> u32 {
    let w15 = w[(t + 1) & 15];
    let w2 = w[(t + 14) & 15];
    let s0 = w15.rotate_right(7) ^ w15.rotate_right(18) ^ (w15 >> 3);
    let s1 = w2.rotate_right(17) ^ w2.rotate_right(19) ^ (w2 >> 10);
    let v = w[t & 15]
        .wrapping_add(s0)
        .wrapping_add(w[(t + 9) & 15])
        .wrapping_add(s1);
    w[t & 15] = v;
    v
}

/// One 64-byte block. Reads the message straight from memory, keeps a
/// rolling 16-word schedule (no 256-byte array to clear) and unrolls all 64
/// rounds: under QEMU/TCG every instruction saved counts, since the
/// purgatory hashes while neither kernel runs.
///
/// # Safety
/// `block` must point to 64 readable bytes.
unsafe fn compress(state: &mut [u32; 8], block: *const u8) {
    let mut w = [0u32; 16];
    let mut t = 0;
    while t < 16 {
        w[t] = u32::from_be(core::ptr::read_unaligned(block.add(4 * t) as *const u32));
        t += 1;
    }
    let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = *state;
    // Fully unrolled with constant indexes: the schedule test and the
    // window arithmetic fold away (the rolled loop cost ~75 instructions
    // per byte under QEMU's instruction counter, this about half).
    macro_rules! word {
        ($t:expr) => {
            if $t < 16 {
                w[$t & 15]
            } else {
                expand(&mut w, $t)
            }
        };
    }
    macro_rules! eight {
        ($t:expr) => {
            round!(a, b, c, d, e, f, g, h, word!($t), K[$t]);
            round!(h, a, b, c, d, e, f, g, word!($t + 1), K[$t + 1]);
            round!(g, h, a, b, c, d, e, f, word!($t + 2), K[$t + 2]);
            round!(f, g, h, a, b, c, d, e, word!($t + 3), K[$t + 3]);
            round!(e, f, g, h, a, b, c, d, word!($t + 4), K[$t + 4]);
            round!(d, e, f, g, h, a, b, c, word!($t + 5), K[$t + 5]);
            round!(c, d, e, f, g, h, a, b, word!($t + 6), K[$t + 6]);
            round!(b, c, d, e, f, g, h, a, word!($t + 7), K[$t + 7]);
        };
    }
    eight!(0);
    eight!(8);
    eight!(16);
    eight!(24);
    eight!(32);
    eight!(40);
    eight!(48);
    eight!(56);
    let add = [a, b, c, d, e, f, g, h];
    let mut i = 0;
    while i < 8 {
        state[i] = state[i].wrapping_add(add[i]);
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    fn reference(data: &[u8]) -> [u8; 32] {
        sha2::Sha256::digest(data).into()
    }

    #[test]
    fn known_vectors() {
        assert_eq!(
            digest(b"abc"),
            [
                0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40, 0xde, 0x5d, 0xae,
                0x22, 0x23, 0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61,
                0xf2, 0x00, 0x15, 0xad
            ]
        );
        assert_eq!(digest(b""), reference(b""));
    }

    #[test]
    fn every_length_around_block_boundaries_matches_sha2() {
        let data: Vec<u8> = (0..1000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        for len in 0..300 {
            assert_eq!(
                digest(&data[..len]),
                reference(&data[..len]),
                "length {len}"
            );
        }
        assert_eq!(digest(&data), reference(&data));
    }

    #[test]
    fn split_updates_and_zero_runs_match_one_shot() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 + 3) as u8).collect();
        for split in [0, 1, 63, 64, 65, 127, 128, 1000, 4999, 5000] {
            let mut h = Sha256::new();
            h.update(&data[..split]);
            h.update(&data[split..]);
            assert_eq!(h.finalize(), reference(&data), "split at {split}");
        }
        for zeros in [0u64, 1, 55, 56, 63, 64, 65, 4096 + 17] {
            let mut h = Sha256::new();
            h.update(&data[..100]);
            h.update_zeros(zeros);
            let mut flat = data[..100].to_vec();
            flat.resize(100 + zeros as usize, 0);
            assert_eq!(h.finalize(), reference(&flat), "{zeros} zeros");
        }
    }

    #[test]
    fn a_megabyte_matches_sha2() {
        let data: Vec<u8> = (0..(1u32 << 20)).map(|i| (i ^ (i >> 8)) as u8).collect();
        assert_eq!(digest(&data), reference(&data));
    }
}
