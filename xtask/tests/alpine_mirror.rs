//! The Alpine fetch path against a mirror served on loopback by this test: a release index,
//! a netboot tarball with its checksums, an `APKINDEX.tar.gz` and `.apk`s built here with
//! real signature/control/data streams. Corrupted files must be rejected (never cached or
//! extracted), good ones fetched, and a re-run must download nothing.

use std::net::TcpListener;

use xtask::cache::Cache;
use xtask::fetch::{alpine, FetchArgs, Source};

mod support;

use support::alpine_mirror::{build, Mirror};

fn mirror() -> Mirror {
    let cfg = b"#\n# Automatically generated file; DO NOT EDIT.\n# Linux/x86 6.6.99-0 Kernel Configuration\n#\nCONFIG_KEXEC=y\n";
    build(
        "latest-stable",
        "3.99.1",
        &[
            ("boot/vmlinuz-lts", b"MZ fake lts kernel"),
            ("boot/config-lts", cfg),
            ("boot/initramfs-lts", b"initramfs"),
            ("boot/modloop-lts", b"modloop"),
            ("boot/vmlinuz-virt", b"MZ fake virt kernel"),
            ("boot/config-virt", cfg),
        ],
    )
}

fn args(m: &Mirror, source: Source) -> FetchArgs {
    FetchArgs {
        source,
        release: vec![],
        flavor: vec![],
        arch: vec![],
        mirror: Some(m.url.clone()),
        kernel: None,
        initrd: None,
        probe_timeout: 4,
        alpine_keys: Some(support::alpine_mirror::test_keys_dir()),
    }
}

fn flip_last_byte(b: &[u8]) -> Vec<u8> {
    let mut v = b.to_vec();
    if let Some(x) = v.last_mut() {
        *x ^= 0xff;
    }
    v
}

#[test]
fn alpine_fetch_verifies_everything_from_a_loopback_mirror() {
    let m = mirror();
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path().join("cache")).unwrap();

    // 1. A corrupted netboot tarball is rejected: nothing cached, nothing extracted.
    m.files
        .lock()
        .unwrap()
        .insert(m.tarball_path.clone(), flip_last_byte(&m.tarball));
    let err = format!(
        "{:#}",
        alpine::fetch(&cache, &args(&m, Source::Alpine)).unwrap_err()
    );
    assert!(err.contains("was not used"), "{err}");
    let extracted = std::fs::read_dir(cache.root().join("extract"))
        .unwrap()
        .count();
    assert_eq!(
        extracted, 0,
        "a tarball that failed verification was extracted"
    );

    // 2. Good tarball, but a package whose data does not match its index record.
    m.files
        .lock()
        .unwrap()
        .insert(m.tarball_path.clone(), m.tarball.clone());
    m.files
        .lock()
        .unwrap()
        .insert(m.zlib_path.clone(), flip_last_byte(&m.zlib));
    let err = format!(
        "{:#}",
        alpine::fetch(&cache, &args(&m, Source::Alpine)).unwrap_err()
    );
    assert!(
        err.contains("zlib-1.3.1-r0.apk") && err.contains("rejected"),
        "{err}"
    );
    for e in std::fs::read_dir(cache.root().join("extract")).unwrap() {
        let d = e.unwrap().path();
        assert!(
            !d.join("usr/lib/libz.so.1").exists(),
            "the corrupt package was extracted into {}",
            d.display()
        );
    }

    // 3. Everything good: kernels and userland land in the result.
    m.files
        .lock()
        .unwrap()
        .insert(m.zlib_path.clone(), m.zlib.clone());
    let f = alpine::fetch(&cache, &args(&m, Source::Alpine)).unwrap();
    let names: Vec<_> = f.kernels.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(
        names,
        vec!["alpine-3.99-lts-x86_64", "alpine-3.99-virt-x86_64"]
    );
    let lts = &f.kernels[0];
    assert_eq!(lts.version, "6.6.99-0-lts");
    assert_eq!(lts.package_version, "6.6.99-r0");
    assert_eq!(std::fs::read(&lts.kernel).unwrap(), b"MZ fake lts kernel");
    let roles: Vec<_> = f.userland.iter().map(|u| u.role.as_str()).collect();
    for want in [
        "initramfs-lts",
        "modloop-lts",
        "busybox",
        "openrc",
        "kexec-tools",
        "lib:musl",
        "lib:zlib",
    ] {
        assert!(roles.contains(&want), "missing role {want} in {roles:?}");
    }
    let kt = f.userland.iter().find(|u| u.role == "kexec-tools").unwrap();
    assert_eq!(std::fs::read(&kt.path).unwrap(), b"kexec");

    // 4. A re-run downloads nothing (only the small indexes are read again).
    m.log.lock().unwrap().clear();
    alpine::fetch(&cache, &args(&m, Source::Alpine)).unwrap();
    let fetched: Vec<String> = m
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|p| p.ends_with(".apk") || p.ends_with(".tar.gz") && !p.contains("APKINDEX"))
        .cloned()
        .collect();
    assert!(fetched.is_empty(), "a re-run downloaded {fetched:?}");
}

#[test]
fn auto_prefers_an_answering_alpine_mirror() {
    let m = mirror();
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path().join("cache")).unwrap();
    let f = xtask::fetch::run(&cache, &args(&m, Source::Auto)).unwrap();
    assert!(f.kernels.iter().all(|k| k.source == "alpine"));
    let manifest = std::fs::read_to_string(cache.root().join("kernels.json")).unwrap();
    assert!(manifest.contains("alpine-3.99-lts-x86_64"), "{manifest}");
}

#[test]
fn probe_reports_why_a_mirror_is_unusable() {
    let why = alpine::probe(None, std::time::Duration::from_secs(1)).unwrap_err();
    assert!(why.contains("no Alpine mirror is configured"), "{why}");
    // A closed loopback port answers at once with a refusal.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/alpine", l.local_addr().unwrap());
    drop(l);
    assert!(alpine::probe(Some(&url), std::time::Duration::from_secs(2)).is_err());
}

/// The index's signature, as `apk` checks it: a good one verifies with the key it names; an
/// index swapped under the same signature, a key missing from the keys directory, and an
/// unsigned index are refused, each saying which.
#[test]
fn apkindex_signatures_are_checked() {
    use support::alpine_mirror::{signed_index, test_keys_dir};
    let stream = |text: &str| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut e, text.as_bytes()).unwrap();
        e.finish().unwrap()
    };
    let good = signed_index(&stream("P:musl\nV:1.2.5-r0\n"));
    let keys = test_keys_dir();
    assert_eq!(
        alpine::verify_apkindex(&good, &keys).unwrap(),
        "test.rsa.pub"
    );

    // Same signature stream, another index behind it.
    let sig_len = good.len() - stream("P:musl\nV:1.2.5-r0\n").len();
    let mut swapped = good[..sig_len].to_vec();
    swapped.extend(stream("P:musl\nV:6.6.6-r0\n"));
    let e = format!(
        "{:#}",
        alpine::verify_apkindex(&swapped, &keys).unwrap_err()
    );
    assert!(
        e.contains("does not match its signature by test.rsa.pub"),
        "{e}"
    );

    let empty = tempfile::tempdir().unwrap();
    let e = format!(
        "{:#}",
        alpine::verify_apkindex(&good, empty.path()).unwrap_err()
    );
    assert!(
        e.contains("signed with test.rsa.pub") && e.contains(&empty.path().display().to_string()),
        "{e}"
    );

    let e = format!(
        "{:#}",
        alpine::verify_apkindex(&stream("P:musl\n"), &keys).unwrap_err()
    );
    assert!(e.contains("unsigned"), "{e}");
}
