//! The purgatory's one decision: may it jump into the new kernel?
//!
//! Kept apart from the entry code so that the host tests run it on ordinary
//! buffers: the image calls the same function on physical memory.

use crate::params::{Params, MAX_REGIONS};
use crate::sha256::Sha256;

/// True when the checks are skipped or the SHA-256 of all regions, in order,
/// equals the digest the loader stored.
///
/// # Safety
/// Every region with a non-zero length must be readable memory.
pub unsafe fn segments_intact(params: &Params) -> bool {
    if params.skip_checks != 0 {
        return true;
    }
    let mut h = Sha256::new();
    let mut i = 0;
    while i < MAX_REGIONS {
        let r = params.regions[i];
        if r.len == 0 {
            break;
        }
        h.update_raw(r.start as usize as *const u8, r.len as usize);
        i += 1;
    }
    let got = h.finalize();
    // A plain loop: comparing arrays could become a call to `bcmp`.
    let mut diff = 0u8;
    let mut j = 0;
    while j < 32 {
        diff |= got[j] ^ params.digest[j];
        j += 1;
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::Region;
    use sha2::Digest;

    fn params_for(bufs: &[&[u8]]) -> Params {
        let mut p = Params::EMPTY;
        let mut h = sha2::Sha256::new();
        for (i, b) in bufs.iter().enumerate() {
            p.regions[i] = Region {
                start: b.as_ptr() as u64,
                len: b.len() as u64,
            };
            h.update(b);
        }
        p.digest = h.finalize().into();
        p
    }

    #[test]
    fn intact_segments_pass_and_one_flipped_bit_fails() {
        let a = vec![0x5au8; 10_000];
        let mut b = vec![0u8; 4096];
        let p = params_for(&[&a, &b]);
        assert!(unsafe { segments_intact(&p) });
        b[4095] ^= 1;
        assert!(!unsafe { segments_intact(&p) });
    }

    #[test]
    fn skip_checks_passes_a_wrong_digest() {
        let a = [1u8; 100];
        let mut p = params_for(&[&a]);
        p.digest[0] ^= 0xff;
        assert!(!unsafe { segments_intact(&p) });
        p.skip_checks = 1;
        assert!(unsafe { segments_intact(&p) });
    }
}
