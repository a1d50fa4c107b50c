//! Compression formats the kernel knows, recognised by their magic bytes, and
//! bounded decompression of the ones this crate needs to look inside.
//!
//! Kernel payloads, `Image.gz`, zboot payloads and initramfs segments all use
//! the same handful of compressors. Recognising them is enough to report a
//! bzImage's payload; decompression (gzip, zstd, xz, LZ4 legacy, lzma; not bzip2 or lzo) is needed to reach an
//! arm64 header or to list the files of a compressed initramfs. Every
//! decompression is capped so that a small "bomb" file is an error, not an
//! out-of-memory kill.

use std::io::Read;

use serde::Serialize;

/// Largest output any decompression in this crate may produce. Real kernels
/// are tens of MiB and initramfs images rarely exceed a few hundred.
pub const MAX_DECOMPRESSED: usize = 512 << 20;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("{format} data is corrupt or truncated: {reason}")]
    Corrupt { format: Compression, reason: String },
    #[error("{format} data expands to more than {limit} bytes; refusing to decompress it (a decompression bomb or not a kernel file)")]
    TooLarge { format: Compression, limit: usize },
    #[error("{format} decompression is not supported by this tool; decompress the file first (e.g. with `{tool} -d`)")]
    Unsupported {
        format: Compression,
        tool: &'static str,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

/// A compression format, as the kernel's `decompress_method()` knows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    Gzip,
    Xz,
    Zstd,
    /// LZ4 legacy frame (`lz4 -l`), the only LZ4 flavour the kernel reads.
    Lz4,
    /// LZ4 frame format: *not* understood by the kernel.
    Lz4Frame,
    Lzma,
    Bzip2,
    Lzo,
}

impl Compression {
    /// Recognises a compressed stream from its first bytes.
    pub fn from_magic(b: &[u8]) -> Option<Self> {
        const TABLE: &[(&[u8], Compression)] = &[
            (&[0x1f, 0x8b], Compression::Gzip),
            (&[0x1f, 0x9e], Compression::Gzip),
            (&[0xfd, b'7', b'z', b'X', b'Z', 0x00], Compression::Xz),
            (&[0x28, 0xb5, 0x2f, 0xfd], Compression::Zstd),
            (&[0x02, 0x21, 0x4c, 0x18], Compression::Lz4),
            (&[0x04, 0x22, 0x4d, 0x18], Compression::Lz4Frame),
            (&[0x5d, 0x00, 0x00], Compression::Lzma),
            (b"BZh", Compression::Bzip2),
            (
                &[0x89, b'L', b'Z', b'O', 0x00, 0x0d, 0x0a, 0x1a, 0x0a],
                Compression::Lzo,
            ),
        ];
        TABLE
            .iter()
            .find(|(magic, _)| b.starts_with(magic))
            .map(|&(_, c)| c)
    }

    /// Name as used by the kernel's Kconfig and by zboot's header.
    pub fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
            Compression::Lz4 => "lz4",
            Compression::Lz4Frame => "lz4-frame",
            Compression::Lzma => "lzma",
            Compression::Bzip2 => "bzip2",
            Compression::Lzo => "lzo",
        }
    }

    /// Parses a zboot header's compression type string.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "gzip" => Compression::Gzip,
            "xz" => Compression::Xz,
            "zstd" | "zstd22" => Compression::Zstd,
            "lz4" => Compression::Lz4,
            "lzma" => Compression::Lzma,
            "bzip2" => Compression::Bzip2,
            "lzo" => Compression::Lzo,
            _ => return None,
        })
    }

    fn tool(self) -> &'static str {
        match self {
            Compression::Lz4 | Compression::Lz4Frame => "lz4",
            Compression::Lzo => "lzop",
            other => other.name(),
        }
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The result of decompressing one stream from the start of a buffer.
#[derive(Debug)]
pub struct Decompressed {
    pub data: Vec<u8>,
    /// How many input bytes the stream occupied; what follows may be another
    /// concatenated segment (initramfs) or padding.
    pub consumed: usize,
}

/// Decompresses the single stream at the start of `input`, producing at most
/// `limit` bytes.
pub fn decompress_stream(format: Compression, input: &[u8], limit: usize) -> Result<Decompressed> {
    let corrupt = |e: std::io::Error| Error::Corrupt {
        format,
        reason: e.to_string(),
    };
    let mut data = Vec::new();
    let consumed = match format {
        Compression::Gzip => {
            let mut rest = input;
            let mut dec = flate2::bufread::GzDecoder::new(&mut rest);
            read_bounded(&mut dec, &mut data, limit).map_err(|e| match e {
                ReadError::Io(e) => corrupt(e),
                ReadError::TooLarge => Error::TooLarge { format, limit },
            })?;
            drop(dec);
            input.len() - rest.len()
        }
        Compression::Zstd => {
            let mut rest = input;
            let mut dec =
                ruzstd::decoding::StreamingDecoder::new(&mut rest).map_err(|e| Error::Corrupt {
                    format,
                    reason: e.to_string(),
                })?;
            read_bounded(&mut dec, &mut data, limit).map_err(|e| match e {
                ReadError::Io(e) => corrupt(e),
                ReadError::TooLarge => Error::TooLarge { format, limit },
            })?;
            drop(dec);
            input.len() - rest.len()
        }
        Compression::Xz => {
            // lzma-rs rejects anything after the stream (the next initramfs
            // segment), so find where the stream ends first.
            let end = xz_stream_end(input).ok_or_else(|| Error::Corrupt {
                format,
                reason: "no valid xz stream footer (truncated?)".into(),
            })?;
            let mut stream = &input[..end];
            let mut out = BoundedWriter {
                buf: &mut data,
                limit,
                overflow: false,
            };
            let result = lzma_rs::xz_decompress(&mut stream, &mut out);
            if out.overflow {
                return Err(Error::TooLarge { format, limit });
            }
            result.map_err(|e| Error::Corrupt {
                format,
                reason: e.to_string(),
            })?;
            end
        }
        Compression::Lzma => {
            let (out, end) = lzma_alone(input, limit)?;
            data = out;
            end
        }
        Compression::Lz4 => {
            let (out, end) = lz4_legacy(input, limit, usize::MAX)?;
            data = out;
            end
        }
        other => {
            return Err(Error::Unsupported {
                format: other,
                tool: other.tool(),
            })
        }
    };
    Ok(Decompressed { data, consumed })
}

/// Largest LZMA dictionary accepted: `lzma -9` uses 64 MiB; a header
/// asking for more is corrupt or hostile.
const LZMA_MEMLIMIT: usize = 256 << 20;

/// Output limit when peeking into an lzma stream.
const LZMA_PEEK_LIMIT: usize = 64 << 20;

/// Decodes an "lzma alone" stream (what `lzma` and the kernel build write).
/// lzma-rs insists that an end-of-stream marker is followed by the end of
/// the input; when more bytes follow (the next initramfs segment) its error
/// comes after it consumed exactly the stream, so the stream is decoded
/// again up to there.
fn lzma_alone(input: &[u8], limit: usize) -> Result<(Vec<u8>, usize)> {
    let format = Compression::Lzma;
    let options = lzma_rs::decompress::Options {
        memlimit: Some(LZMA_MEMLIMIT),
        ..Default::default()
    };
    // One decode: the output or the error, and the input bytes consumed.
    let attempt = |stream: &[u8]| {
        let mut rest = stream;
        let mut data = Vec::new();
        let mut out = BoundedWriter {
            buf: &mut data,
            limit,
            overflow: false,
        };
        let result = lzma_rs::lzma_decompress_with_options(&mut rest, &mut out, &options);
        let overflow = out.overflow;
        (result.map(|()| data), overflow, stream.len() - rest.len())
    };
    let (mut result, mut overflow, mut consumed) = attempt(input);
    let trailing = |r: &std::result::Result<Vec<u8>, lzma_rs::error::Error>| matches!(r, Err(e) if e.to_string().contains("more bytes are available"));
    if !overflow && trailing(&result) && consumed > 0 && consumed < input.len() {
        (result, overflow, consumed) = attempt(&input[..consumed]);
    }
    if overflow {
        return Err(Error::TooLarge { format, limit });
    }
    let data = result.map_err(|e| Error::Corrupt {
        format,
        reason: e.to_string(),
    })?;
    Ok((data, consumed))
}

/// Largest block of the LZ4 legacy format, uncompressed (`lz4 -l`).
const LZ4_LEGACY_BLOCK: usize = 8 << 20;
const LZ4_LEGACY_MAGIC: u32 = 0x184c_2102;

/// Decodes an LZ4 legacy stream: the magic, then blocks each preceded by
/// its compressed size, as the kernel's `unlz4` reads them. The stream has
/// no end marker: it ends at the end of the input, at a size field too big
/// for the rest (the kernel build appends the uncompressed size to its
/// payload), or at a size that is not a valid block (the next initramfs
/// segment). A repeated magic starts another stream, which continues.
fn lz4_legacy(input: &[u8], limit: usize, stop_after: usize) -> Result<(Vec<u8>, usize)> {
    let format = Compression::Lz4;
    let corrupt = |reason: String| Error::Corrupt { format, reason };
    let mut out = Vec::new();
    let mut block = vec![0u8; LZ4_LEGACY_BLOCK];
    let mut pos = 4;
    while let Some(word) = input.get(pos..pos + 4) {
        let size = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        if size == LZ4_LEGACY_MAGIC {
            pos += 4;
            continue;
        }
        let start = pos + 4;
        let Some(chunk) = input.get(start..start.saturating_add(size as usize)) else {
            break;
        };
        if size == 0 {
            break;
        }
        let n = match lz4_flex::block::decompress_into(chunk, &mut block) {
            Ok(n) => n,
            // A first block that does not decode is corruption; a later
            // one is where the stream ended and something else begins.
            Err(e) if out.is_empty() => return Err(corrupt(e.to_string())),
            Err(_) => break,
        };
        if out.len() + n > limit {
            return Err(Error::TooLarge { format, limit });
        }
        out.extend_from_slice(&block[..n]);
        pos = start + size as usize;
        if out.len() >= stop_after {
            break;
        }
    }
    if out.is_empty() {
        return Err(corrupt("no complete block (truncated?)".into()));
    }
    Ok((out, pos))
}

/// Length of the xz stream at the start of `input`: the first 4-aligned
/// offset where a stream footer whose CRC32 checks out and whose flags
/// repeat the header's ends. (An xz stream is always a multiple of four
/// bytes; the footer is CRC32, backward size, flags, "YZ".)
fn xz_stream_end(input: &[u8]) -> Option<usize> {
    let flags = input.get(6..8)?;
    (24..=input.len()).step_by(4).find(|&end| {
        let footer = &input[end - 12..end];
        if &footer[10..12] != b"YZ" || &footer[8..10] != flags {
            return false;
        }
        let mut crc = flate2::Crc::new();
        crc.update(&footer[4..10]);
        crc.sum().to_le_bytes() == footer[0..4]
    })
}

/// Decompresses a whole buffer that holds one stream of `format`.
pub fn decompress(format: Compression, input: &[u8], limit: usize) -> Result<Vec<u8>> {
    decompress_stream(format, input, limit).map(|d| d.data)
}

/// The first `n` bytes of a stream's decompressed contents (fewer when
/// the stream is shorter or broken): enough to recognise what is inside
/// without decompressing everything. `None` for formats this crate cannot
/// decompress.
pub fn peek(format: Compression, input: &[u8], n: usize) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    match format {
        Compression::Gzip => {
            let _ = flate2::bufread::GzDecoder::new(input)
                .take(n as u64)
                .read_to_end(&mut out);
        }
        Compression::Zstd => {
            let mut rest = input;
            let mut dec = ruzstd::decoding::StreamingDecoder::new(&mut rest).ok()?;
            let _ = (&mut dec).take(n as u64).read_to_end(&mut out);
        }
        Compression::Lz4 => {
            let (mut data, _) = lz4_legacy(input, n.saturating_add(LZ4_LEGACY_BLOCK), n).ok()?;
            data.truncate(n);
            out = data;
        }
        Compression::Lzma => {
            // lzma-rs writes its output only at the end of the stream, so a
            // peek is a (bounded) full decode.
            let (data, _) = lzma_alone(input, n.max(LZMA_PEEK_LIMIT)).ok()?;
            out = data;
            out.truncate(n);
        }
        Compression::Xz => {
            let mut rest = input;
            let mut w = BoundedWriter {
                buf: &mut out,
                limit: n,
                overflow: false,
            };
            let _ = lzma_rs::xz_decompress(&mut rest, &mut w);
        }
        _ => return None,
    }
    Some(out)
}

enum ReadError {
    Io(std::io::Error),
    TooLarge,
}

fn read_bounded(
    r: &mut impl Read,
    out: &mut Vec<u8>,
    limit: usize,
) -> std::result::Result<(), ReadError> {
    let cap = (limit as u64).saturating_add(1);
    r.take(cap).read_to_end(out).map_err(ReadError::Io)?;
    if out.len() > limit {
        return Err(ReadError::TooLarge);
    }
    Ok(())
}

struct BoundedWriter<'a> {
    buf: &'a mut Vec<u8>,
    limit: usize,
    overflow: bool,
}

impl std::io::Write for BoundedWriter<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + data.len() > self.limit {
            let room = self.limit - self.buf.len().min(self.limit);
            self.buf.extend_from_slice(&data[..room]);
            self.overflow = true;
            return Err(std::io::Error::other("output limit reached"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn recognises_every_magic() {
        assert_eq!(
            Compression::from_magic(&[0x02, 0x21, 0x4c, 0x18, 0]),
            Some(Compression::Lz4)
        );
        assert_eq!(
            Compression::from_magic(b"BZh91AY"),
            Some(Compression::Bzip2)
        );
        assert_eq!(
            Compression::from_magic(&[0x28, 0xb5, 0x2f, 0xfd]),
            Some(Compression::Zstd)
        );
        assert_eq!(Compression::from_magic(b"\x89PNG"), None);
        assert_eq!(Compression::from_magic(&[]), None);
    }

    #[test]
    fn gzip_reports_consumed_bytes_of_the_first_member() {
        let mut two = gzip(b"first");
        let first_len = two.len();
        two.extend(gzip(b"second"));
        let d = decompress_stream(Compression::Gzip, &two, 100).unwrap();
        assert_eq!(d.data, b"first");
        assert_eq!(d.consumed, first_len);
    }

    #[test]
    fn bomb_is_an_error() {
        let z = gzip(&vec![0u8; 1 << 20]);
        let e = decompress(Compression::Gzip, &z, 1000).unwrap_err();
        assert!(matches!(e, Error::TooLarge { .. }), "{e}");
    }

    #[test]
    fn truncated_gzip_is_an_error() {
        let z = gzip(b"hello world, hello world");
        for len in 0..z.len() {
            assert!(
                decompress(Compression::Gzip, &z[..len], 1000).is_err(),
                "len {len}"
            );
        }
    }

    #[test]
    fn xz_stream_followed_by_other_data() {
        let mut xz = Vec::new();
        lzma_rs::xz_compress(&mut &b"hello xz"[..], &mut xz).unwrap();
        let len = xz.len();
        xz.extend_from_slice(b"070701trailing cpio");
        let d = decompress_stream(Compression::Xz, &xz, 100).unwrap();
        assert_eq!(d.data, b"hello xz");
        assert_eq!(d.consumed, len);
        for cut in 0..len {
            assert!(
                decompress_stream(Compression::Xz, &xz[..cut], 100).is_err(),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn lz4_legacy_blocks_and_trailing_size() {
        let mut s = vec![0x02, 0x21, 0x4c, 0x18];
        for part in [&b"first block "[..], &b"second block"[..]] {
            let c = lz4_flex::block::compress(part);
            s.extend_from_slice(&(c.len() as u32).to_le_bytes());
            s.extend_from_slice(&c);
        }
        let end = s.len();
        // What the kernel build appends to its payload: the size.
        s.extend_from_slice(&24u32.to_le_bytes());
        let d = decompress_stream(Compression::Lz4, &s, 100).unwrap();
        assert_eq!(d.data, b"first block second block");
        assert_eq!(d.consumed, end);
        assert_eq!(peek(Compression::Lz4, &s, 5).unwrap(), b"first");
        assert!(decompress_stream(Compression::Lz4, &s, 10).is_err());
        for cut in 0..9 {
            assert!(
                decompress_stream(Compression::Lz4, &s[..cut], 100).is_err(),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn lzma_stream_followed_by_other_data() {
        let mut lz = Vec::new();
        lzma_rs::lzma_compress(&mut &b"hello lzma"[..], &mut lz).unwrap();
        let len = lz.len();
        lz.extend_from_slice(b"070701trailing cpio");
        let d = decompress_stream(Compression::Lzma, &lz, 100).unwrap();
        assert_eq!(d.data, b"hello lzma");
        assert_eq!(d.consumed, len);
        assert_eq!(peek(Compression::Lzma, &lz, 5).unwrap(), b"hello");
        for cut in 0..len {
            assert!(
                decompress_stream(Compression::Lzma, &lz[..cut], 100).is_err(),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn lzo_is_unsupported_with_advice() {
        let e = decompress(Compression::Lzo, b"\x89LZO\0\r\n\x1a\n", 10).unwrap_err();
        assert!(e.to_string().contains("lzop -d"), "{e}");
    }
}
