//! An Alpine mirror served on loopback by a test: a release index (`latest-releases.yaml`), a
//! netboot tarball with its checksums, an `APKINDEX.tar.gz` and `.apk`s built here with real
//! signature/control/data streams. Used by the fetcher's test (corrupted files must be
//! rejected) and the matrix's (`--source alpine --release …` against a mirror).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use base64::Engine;
use flate2::write::GzEncoder;
use sha1::Sha1;
use sha2::{Digest, Sha256};

pub type Files = Arc<Mutex<BTreeMap<String, Vec<u8>>>>;

/// A tiny HTTP/1.1 server on 127.0.0.1 serving `files`; records every path requested.
/// Bounded: it stops after 500 connections (the test needs a few dozen).
pub fn serve(files: Files, log: Arc<Mutex<Vec<String>>>) -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        for s in l.incoming().take(500) {
            let Ok(mut s) = s else { continue };
            let mut r = BufReader::new(s.try_clone().expect("clone"));
            let mut first = String::new();
            let _ = r.read_line(&mut first);
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).map(|n| n == 0).unwrap_or(true) || h == "\r\n" {
                    break;
                }
            }
            let path = first.split_whitespace().nth(1).unwrap_or("/").to_string();
            log.lock().unwrap().push(path.clone());
            let body = files.lock().unwrap().get(&path).cloned();
            let _ = match body {
                Some(b) => {
                    let _ = write!(
                        s,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        b.len()
                    );
                    s.write_all(&b)
                }
                None => write!(
                    s,
                    "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                ),
            };
        }
    });
    format!("http://{addr}/alpine")
}

pub fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A tar of `files`; `fragment` drops the end-of-archive blocks (as in apk's first streams).
pub fn tar_of(files: &[(&str, &[u8])], fragment: bool) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o755);
        h.set_cksum();
        b.append_data(&mut h, name, *data).unwrap();
    }
    let mut v = b.into_inner().unwrap();
    if fragment {
        while v.len() >= 512 && v[v.len() - 512..].iter().all(|&x| x == 0) {
            v.truncate(v.len() - 512);
        }
    }
    v
}

/// The directory holding the public half of the test signing key (`test.rsa.pub`), for
/// `--alpine-keys` / `KEXEC_RS_ALPINE_KEYS`.
pub fn test_keys_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/keys")
}

/// `APKINDEX.tar.gz` as Alpine signs it: a tar with `.SIGN.RSA.test.rsa.pub` (PKCS#1 v1.5
/// over the SHA-1 of the index stream, with the test key), then the index stream.
pub fn signed_index(index_stream: &[u8]) -> Vec<u8> {
    use rsa::pkcs8::DecodePrivateKey;
    let pem = include_str!("../data/alpine-test-key.pem");
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(pem).expect("the test key");
    let sig = key
        .sign(
            rsa::Pkcs1v15Sign::new::<Sha1>(),
            &Sha1::digest(index_stream),
        )
        .expect("signing");
    let mut out = gz(&tar_of(&[(".SIGN.RSA.test.rsa.pub", &sig)], true));
    out.extend_from_slice(index_stream);
    out
}

/// Builds a v2 `.apk` and its APKINDEX record.
pub fn apk(
    name: &str,
    ver: &str,
    files: &[(&str, &[u8])],
    deps: &str,
    provides: &str,
) -> (Vec<u8>, String) {
    let sig = gz(&tar_of(
        &[(".SIGN.RSA.test.rsa.pub", b"not a real signature")],
        true,
    ));
    let data = gz(&tar_of(files, false));
    let pkginfo = format!(
        "pkgname = {name}\npkgver = {ver}\ndatahash = {}\n",
        hex::encode(Sha256::digest(&data))
    );
    let control = gz(&tar_of(&[(".PKGINFO", pkginfo.as_bytes())], true));
    let c = format!(
        "Q1{}",
        base64::engine::general_purpose::STANDARD.encode(Sha1::digest(&control))
    );
    let mut bytes = sig;
    bytes.extend_from_slice(&control);
    bytes.extend_from_slice(&data);
    let mut rec = format!(
        "C:{c}\nP:{name}\nV:{ver}\nA:x86_64\nS:{}\nI:1\nT:test\n",
        bytes.len()
    );
    if !deps.is_empty() {
        rec += &format!("D:{deps}\n");
    }
    if !provides.is_empty() {
        rec += &format!("p:{provides}\n");
    }
    (bytes, rec)
}

pub struct Mirror {
    pub files: Files,
    pub log: Arc<Mutex<Vec<String>>>,
    pub url: String,
    pub tarball_path: String,
    pub tarball: Vec<u8>,
    pub zlib_path: String,
    pub zlib: Vec<u8>,
}

/// An Alpine mirror on loopback: `dir` is the branch directory (`latest-stable`, `v3.23`),
/// `version` the release (`3.23.1`; its branch `v3.23` goes into the index), `netboot` the
/// members of the netboot tarball (`boot/vmlinuz-lts`, …). Userland packages are built here.
pub fn build(dir: &str, version: &str, netboot: &[(&str, &[u8])]) -> Mirror {
    let files: Files = Arc::default();
    let log = Arc::default();
    let url = serve(files.clone(), Arc::clone(&log));
    let rel = format!("/alpine/{dir}/releases/x86_64");
    let tarball = gz(&tar_of(netboot, false));
    let sum = hex::encode(Sha256::digest(&tarball));
    let file = format!("alpine-netboot-{version}-x86_64.tar.gz");
    let branch = format!("v{}", version.rsplitn(2, '.').last().unwrap_or(version));
    let yaml = format!(
        "---\n-\n  title: \"Netboot\"\n  desc: |\n    Kernel, initramfs and modloop for\n    netboot.\n  branch: {branch}\n  arch: x86_64\n  version: {version}\n  flavor: alpine-netboot\n  file: {file}\n  iso: {file}\n  date: 2026-09-17\n  size: {}\n  sha256: {sum}\n  sha512: 00\n",
        tarball.len()
    );
    let repo = format!("/alpine/{dir}/main/x86_64");
    let (musl, musl_rec) = apk(
        "musl",
        "1.2.5-r0",
        &[("lib/ld-musl-x86_64.so.1", b"musl")],
        "",
        "so:libc.musl-x86_64.so.1=1",
    );
    let (bb, bb_rec) = apk(
        "busybox",
        "1.37.0-r0",
        &[("bin/busybox", b"busybox")],
        "so:libc.musl-x86_64.so.1",
        "",
    );
    let (orc, orc_rec) = apk(
        "openrc",
        "0.55.1-r0",
        &[("sbin/openrc", b"openrc")],
        "so:libc.musl-x86_64.so.1",
        "",
    );
    let (zlib, zlib_rec) = apk(
        "zlib",
        "1.3.1-r0",
        &[("usr/lib/libz.so.1", b"zlib")],
        "so:libc.musl-x86_64.so.1",
        "so:libz.so.1=1.3.1",
    );
    let (kt, kt_rec) = apk(
        "kexec-tools",
        "2.0.29-r0",
        &[("usr/sbin/kexec", b"kexec")],
        "so:libc.musl-x86_64.so.1 so:libz.so.1",
        "",
    );
    let (lts, lts_rec) = apk("linux-lts", "6.6.99-r0", &[("boot/x", b"x")], "", "");
    let index_text = [musl_rec, bb_rec, orc_rec, zlib_rec, kt_rec, lts_rec].join("\n");
    let apkindex = signed_index(&gz(&tar_of(
        &[
            ("DESCRIPTION", b"test"),
            ("APKINDEX", index_text.as_bytes()),
        ],
        false,
    )));
    {
        let mut f = files.lock().unwrap();
        f.insert(format!("{rel}/latest-releases.yaml"), yaml.into_bytes());
        f.insert(format!("{rel}/{file}"), tarball.clone());
        f.insert(
            format!("{rel}/{file}.sha256"),
            format!("{sum}  {file}\n").into_bytes(),
        );
        f.insert(format!("{repo}/APKINDEX.tar.gz"), apkindex);
        for (n, b) in [
            ("musl-1.2.5-r0", musl),
            ("busybox-1.37.0-r0", bb),
            ("openrc-0.55.1-r0", orc),
            ("kexec-tools-2.0.29-r0", kt),
            ("linux-lts-6.6.99-r0", lts),
        ] {
            f.insert(format!("{repo}/{n}.apk"), b);
        }
        f.insert(format!("{repo}/zlib-1.3.1-r0.apk"), zlib.clone());
    }
    Mirror {
        files,
        log,
        url,
        tarball_path: format!("{rel}/{file}"),
        tarball,
        zlib_path: format!("{repo}/zlib-1.3.1-r0.apk"),
        zlib,
    }
}
