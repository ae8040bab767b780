//! The fixed 64-bit hash behind the weighted rendezvous choice.
//!
//! It must give the same answer in every process, on every platform and in
//! every release, or devices would move between hubs when the service is
//! upgraded. So it is written out here (a multiply-fold construction in the
//! style of wyhash, with fixed constants) instead of borrowing std's
//! `RandomState`, whose keys are random per process, or a crate whose output
//! may change between versions. The golden values in the tests pin it.

/// Fixed odd constants (digits of well-known mixing constants; any odd
/// 64-bit values with good bit balance would do, but they must never change).
const K0: u64 = 0xa076_1d64_78bd_642f;
const K1: u64 = 0xe703_7ed1_a0b4_28db;
const K2: u64 = 0x8ebc_6af0_9c88_c6e3;

/// Multiply two 64-bit words into 128 bits and fold the halves together.
#[inline(always)]
fn fold_multiply(a: u64, b: u64) -> u64 {
    let product = u128::from(a) * u128::from(b);
    (product as u64) ^ ((product >> 64) as u64)
}

/// Hash a name case-insensitively (ASCII letters are lower-cased on the fly,
/// so `Device-1` and `device-1` hash alike without allocating).
#[inline]
pub(crate) fn hash_name(name: &str) -> u64 {
    let bytes = name.as_bytes();
    let mut state = K0;
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        for (dst, src) in word.iter_mut().zip(chunk) {
            *dst = src.to_ascii_lowercase();
        }
        state = fold_multiply(state ^ u64::from_le_bytes(word), K1);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut word = [0u8; 8];
        for (dst, src) in word.iter_mut().zip(rest) {
            *dst = src.to_ascii_lowercase();
        }
        state = fold_multiply(state ^ u64::from_le_bytes(word), K1);
    }
    // The length keeps "a" and "a\0" apart (the tail is zero-padded).
    fold_multiply(state ^ bytes.len() as u64, K2)
}

/// Combine a device hash with a hub seed into one well-mixed 64-bit word
/// (the murmur3 finaliser: every input bit affects every output bit).
#[inline(always)]
pub(crate) fn combine(device: u64, hub_seed: u64) -> u64 {
    let mut x = device ^ hub_seed;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^= x >> 33;
    x
}

/// Map 64 random bits to a uniform value in the open interval (0, 1).
#[inline(always)]
pub(crate) fn unit_interval(bits: u64) -> f64 {
    // 52 bits, offset by half a step, so 0 and 1 never occur (ln(0) would
    // be infinite) and every value is exact in an f64.
    ((bits >> 12) as f64 + 0.5) * (1.0 / (1u64 << 52) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_insensitive() {
        assert_eq!(hash_name("Device-ABC.1"), hash_name("device-abc.1"));
        assert_ne!(hash_name("device-1"), hash_name("device-2"));
    }

    #[test]
    fn length_matters() {
        assert_ne!(hash_name("a"), hash_name("a\0"));
        assert_ne!(hash_name(""), hash_name("\0"));
    }

    /// These values are a compatibility promise: a device's hub under the
    /// hashed policy depends on them. If this test fails, the hash changed and
    /// devices would be reassigned after an upgrade — do not update the
    /// numbers, restore the function.
    #[test]
    fn golden_values() {
        let got = [
            hash_name(""),
            hash_name("device-1"),
            hash_name("a-registration-id-longer-than-sixteen"),
            combine(hash_name("device-1"), hash_name("hub-a.azure-devices.net")),
        ];
        assert_eq!(got, GOLDEN);
    }

    const GOLDEN: [u64; 4] = [
        16325314592318339460,
        79612799073535349,
        14238045751687391270,
        6583927079004065475,
    ];

    #[test]
    fn unit_interval_is_open() {
        assert!(unit_interval(0) > 0.0);
        assert!(unit_interval(u64::MAX) < 1.0);
    }
}
