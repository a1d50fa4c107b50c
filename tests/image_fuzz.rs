//! Property tests: `inspect_bytes` returns (a report or an error) for any
//! input and never panics. Inputs are random bytes behind every magic the
//! detector knows, and random mutations (byte writes, truncations,
//! insertions) of every committed fixture, which reach far deeper into the
//! parsers than random bytes alone.

use std::path::Path;

use proptest::prelude::*;

/// Fixture contents, read once per test.
fn fixtures() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .expect("fixtures/ exists")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.file_name().is_some_and(|n| n != "README.md"))
        .collect();
    names.sort();
    names
        .iter()
        .map(|p| std::fs::read(p).expect("readable fixture"))
        .collect()
}

fn magic_prefix() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"\x7fELF\x02\x01\x01".to_vec()),
        Just(b"\x7fELF\x01\x01\x01".to_vec()),
        Just(b"MZ\0\0zimg".to_vec()),
        Just(b"MZ".to_vec()),
        Just(vec![0x1f, 0x8b, 8, 0]),
        Just(vec![0xfd, b'7', b'z', b'X', b'Z', 0]),
        Just(vec![0x28, 0xb5, 0x2f, 0xfd]),
        Just(vec![0x02, 0x21, 0x4c, 0x18]),
        Just(vec![
            0x5d, 0, 0, 0x80, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff
        ]),
        Just(vec![0x5d, 0, 0, 0x80, 0, 0x00, 0x10, 0, 0, 0, 0, 0, 0]),
        Just(b"070701".to_vec()),
        Just(b"07070100000001".to_vec()),
        Just(Vec::new()),
    ]
}

/// Puts the x86 or arm64 magic at its offset, so random data reaches the
/// bzImage and Image parsers too.
fn with_offset_magic(mut b: Vec<u8>, which: u8) -> Vec<u8> {
    match which % 3 {
        0 if b.len() >= 0x206 => {
            b[0x1fe] = 0x55;
            b[0x1ff] = 0xaa;
            b[0x202..0x206].copy_from_slice(b"HdrS");
        }
        1 if b.len() >= 0x40 => b[0x38..0x3c].copy_from_slice(b"ARM\x64"),
        _ => {}
    }
    b
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_behind_any_magic(prefix in magic_prefix(), body in proptest::collection::vec(any::<u8>(), 0..3000), which in any::<u8>()) {
        let mut b = prefix;
        b.extend(body);
        let _ = kexec::image::inspect_bytes(&with_offset_magic(b, which));
    }

    #[test]
    fn mutated_fixtures(index in any::<prop::sample::Index>(), edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..4), 1..8)) {
        let all = fixtures();
        let mut b = all[index.index(all.len())].clone();
        for (at, value, op) in edits {
            if b.is_empty() {
                b.push(value);
                continue;
            }
            let i = at.index(b.len());
            match op {
                0 => b[i] = value,
                1 => b.truncate(i),
                2 => b.insert(i, value),
                _ => b[i] ^= 1 << (value % 8),
            }
        }
        let _ = kexec::image::inspect_bytes(&b);
    }
}
