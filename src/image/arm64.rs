//! arm64 kernels: the `Image` header (`Documentation/arch/arm64/booting.rst`)
//! and the compressed wrappers around it (`Image.gz`, `Image.zst`, EFI zboot).
//!
//! `kexec_file_load` on arm64 takes an uncompressed `Image` (kexec-tools
//! decompresses `Image.gz` and zboot itself), so [`decompress`] is what the
//! CLI calls before loading; the header tells where the kernel may be placed.

use std::borrow::Cow;

use serde::Serialize;

use super::compression::{self, Compression, MAX_DECOMPRESSED};

/// `ARM\x64`, little-endian, at offset 0x38.
pub const MAGIC: u32 = 0x644d_5241;
/// Size of the Image header.
pub const HEADER_LEN: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("file is {len} bytes, too short for an arm64 Image header (need 64)")]
    TooShort { len: usize },
    #[error("no \"ARM\\x64\" magic at offset 0x38: not an arm64 Image")]
    NoMagic,
    #[error("the EFI stub's PE header is broken: {0}")]
    Pe(#[from] super::pe::Error),
    #[error("zboot header is cut short: the file is {len} bytes")]
    ZbootTooShort { len: usize },
    #[error("zboot header puts the compressed payload at {offset:#x}+{size:#x}, outside the {len}-byte file (truncated image or lying sizes)")]
    ZbootPayloadPastEnd { offset: u32, size: u32, len: usize },
    #[error("zboot compression type {0:?} is not one the kernel knows")]
    ZbootUnknownCompression(String),
    #[error("could not decompress the kernel: {0}")]
    Decompress(#[from] compression::Error),
    #[error(
        "the decompressed {format} data is not an arm64 Image (no \"ARM\\x64\" magic at 0x38)"
    )]
    NotAnImageInside { format: Compression },
}

pub type Result<T> = std::result::Result<T, Error>;

/// Page size the kernel was built for (flags bits 1-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PageSize {
    Unspecified,
    #[serde(rename = "4k")]
    K4,
    #[serde(rename = "16k")]
    K16,
    #[serde(rename = "64k")]
    K64,
}

/// The arm64 Image header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Header {
    /// Offset from a 2 MiB aligned base the image must be loaded at.
    pub text_offset: u64,
    /// Memory the kernel occupies from its load address, bss included;
    /// 0 for kernels before 3.17.
    pub image_size: u64,
    pub flags: u64,
    pub big_endian: bool,
    pub page_size: PageSize,
    /// Flags bit 3: the kernel can be placed anywhere in physical memory
    /// (otherwise as close as possible to the base of DRAM).
    pub phys_placement_anywhere: bool,
    /// The EFI stub's PE header offset (`res5`), non-zero when an EFI stub
    /// is present (the file then also starts with "MZ").
    pub pe_header_offset: u32,
    pub efi_stub: bool,
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    b.get(o..o + 4)
        .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
        .unwrap_or(0)
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    u32_at(b, o) as u64 | (u32_at(b, o + 4) as u64) << 32
}

/// True when the buffer carries an Image header.
pub fn has_magic(b: &[u8]) -> bool {
    b.len() >= HEADER_LEN && u32_at(b, 0x38) == MAGIC
}

impl Header {
    pub fn parse(b: &[u8]) -> Result<Self> {
        if b.len() < HEADER_LEN {
            return Err(Error::TooShort { len: b.len() });
        }
        if u32_at(b, 0x38) != MAGIC {
            return Err(Error::NoMagic);
        }
        let flags = u64_at(b, 0x18);
        let pe_header_offset = u32_at(b, 0x3c);
        Ok(Header {
            text_offset: u64_at(b, 0x08),
            image_size: u64_at(b, 0x10),
            flags,
            big_endian: flags & 1 != 0,
            page_size: match (flags >> 1) & 3 {
                1 => PageSize::K4,
                2 => PageSize::K16,
                3 => PageSize::K64,
                _ => PageSize::Unspecified,
            },
            phys_placement_anywhere: flags & 8 != 0,
            pe_header_offset,
            efi_stub: b.starts_with(b"MZ") && pe_header_offset != 0,
        })
    }
}

/// An uncompressed Image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Arm64Image {
    pub header: Header,
    /// The kernel's `linux_banner` ("Linux version 6.1.0-56-arm64 (…) …"),
    /// found by searching the uncompressed image: the arm64 header has no
    /// version field, and this is what `uname -a` will print.
    pub linux_banner: Option<String>,
    pub efi: Option<super::pe::PeInfo>,
}

/// The banner's fixed prefix in `init/version.c`.
const BANNER: &[u8] = b"Linux version ";
/// Longest banner read.
const MAX_BANNER: usize = 512;

/// Candidates examined at most (a kernel has two or three).
const MAX_BANNERS: usize = 16;

/// Finds a printable, NUL-terminated "Linux version …" string. Kernels
/// since 6.1 carry two: a weak placeholder whose build number is missing
/// ("… # SMP …", from `init/version.c`) and the real one ("#1 SMP",
/// from `init/version-timestamp.c`); the real one is preferred.
fn find_banner(b: &[u8]) -> Option<String> {
    let mut found: Vec<String> = Vec::new();
    let mut from = 0;
    while found.len() < MAX_BANNERS {
        let Some(pos) = b
            .get(from..)
            .and_then(|rest| rest.windows(BANNER.len()).position(|w| w == BANNER))
        else {
            break;
        };
        let start = from + pos;
        let tail = &b[start..b.len().min(start + MAX_BANNER)];
        if let Some(end) = tail.iter().position(|&c| c == 0 || c == b'\n') {
            let text = &tail[..end];
            // The real banner has a version after the prefix; other copies
            // (format strings such as "Linux version %s") do not.
            if text.len() > BANNER.len()
                && text[BANNER.len()].is_ascii_digit()
                && text.iter().all(|c| (0x20..0x7f).contains(c))
            {
                found.push(String::from_utf8_lossy(text).into_owned());
            }
        }
        from = start + 1;
    }
    let has_build_number = |s: &&String| {
        s.as_bytes()
            .windows(2)
            .any(|w| w[0] == b'#' && w[1].is_ascii_digit())
    };
    found
        .iter()
        .find(has_build_number)
        .or(found.first())
        .cloned()
}

/// Parses an uncompressed Image. `image_size` counts bss, so the file is
/// legitimately shorter than it; a truncated EFI-stub Image is caught by its
/// PE sections reaching past the end of the file.
pub fn parse_image(b: &[u8]) -> Result<Arm64Image> {
    let header = Header::parse(b)?;
    let efi = if header.efi_stub && super::pe::has_pe_header(b) {
        Some(super::pe::parse(b)?)
    } else {
        None
    };
    Ok(Arm64Image {
        header,
        linux_banner: find_banner(b),
        efi,
    })
}

/// An EFI zboot image: a small EFI application that decompresses the real
/// kernel (`CONFIG_EFI_ZBOOT`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Zboot {
    pub payload_offset: u32,
    pub payload_size: u32,
    /// The header's compression type string, e.g. "gzip".
    pub compression_type: String,
    pub compression: Compression,
}

/// True when the file starts like a zboot image.
pub fn is_zboot(b: &[u8]) -> bool {
    b.starts_with(b"MZ") && b.get(4..8) == Some(b"zimg")
}

impl Zboot {
    pub fn parse(b: &[u8]) -> Result<Self> {
        if b.len() < 0x40 || !is_zboot(b) {
            return Err(Error::ZbootTooShort { len: b.len() });
        }
        let payload_offset = u32_at(b, 8);
        let payload_size = u32_at(b, 12);
        let kind = &b[24..0x3c];
        let kind = String::from_utf8_lossy(kind.split(|&c| c == 0).next().unwrap_or_default())
            .into_owned();
        let compression = Compression::from_name(&kind)
            .ok_or_else(|| Error::ZbootUnknownCompression(kind.clone()))?;
        if payload_offset as u64 + payload_size as u64 > b.len() as u64 {
            return Err(Error::ZbootPayloadPastEnd {
                offset: payload_offset,
                size: payload_size,
                len: b.len(),
            });
        }
        Ok(Zboot {
            payload_offset,
            payload_size,
            compression_type: kind,
            compression,
        })
    }

    pub fn payload<'a>(&self, b: &'a [u8]) -> &'a [u8] {
        let start = self.payload_offset as usize;
        b.get(start..start + self.payload_size as usize)
            .unwrap_or_default()
    }
}

/// Returns the uncompressed kernel: the input itself when it is already an
/// Image (or anything else that is not a compressed arm64 kernel), or the
/// decompressed contents of `Image.gz`, `Image.zst` or a zboot payload,
/// capped at [`MAX_DECOMPRESSED`]. The result is checked to be an Image.
///
/// ```
/// use std::io::Write;
/// use kexec::image::arm64;
///
/// let image = arm64::build_image(0, 0x10000, 0xa, &[0; 256]);
/// let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
/// gz.write_all(&image).unwrap();
/// let gz = gz.finish().unwrap();
/// assert_eq!(arm64::decompress(&gz).unwrap().as_ref(), image.as_slice());
/// ```
pub fn decompress(b: &[u8]) -> Result<Cow<'_, [u8]>> {
    decompress_bounded(b, MAX_DECOMPRESSED)
}

/// [`decompress`] with an explicit output limit.
pub fn decompress_bounded(b: &[u8], limit: usize) -> Result<Cow<'_, [u8]>> {
    let (format, data) = if is_zboot(b) {
        let z = Zboot::parse(b)?;
        (z.compression, z.payload(b))
    } else if let Some(format) = Compression::from_magic(b) {
        (format, b)
    } else {
        return Ok(Cow::Borrowed(b));
    };
    let out = compression::decompress(format, data, limit)?;
    if !has_magic(&out) {
        return Err(Error::NotAnImageInside { format });
    }
    Ok(Cow::Owned(out))
}

/// Fixture and test helper: an Image header with the given fields, padded
/// with `body` after the 64-byte header.
pub fn build_image(text_offset: u64, image_size: u64, flags: u64, body: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; HEADER_LEN];
    // code0: "b #0x40" (branch past the header), as a kernel without EFI stub.
    b[0..4].copy_from_slice(&0x1400_0010u32.to_le_bytes());
    b[8..16].copy_from_slice(&text_offset.to_le_bytes());
    b[16..24].copy_from_slice(&image_size.to_le_bytes());
    b[24..32].copy_from_slice(&flags.to_le_bytes());
    b[0x38..0x3c].copy_from_slice(&MAGIC.to_le_bytes());
    b.extend_from_slice(body);
    b
}

/// Fixture and test helper: a zboot image around an already compressed
/// payload.
pub fn build_zboot(compression_type: &str, payload: &[u8]) -> Vec<u8> {
    let offset = 0x200usize;
    let mut b = vec![0u8; offset];
    b[0..2].copy_from_slice(b"MZ");
    b[4..8].copy_from_slice(b"zimg");
    b[8..12].copy_from_slice(&(offset as u32).to_le_bytes());
    b[12..16].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    b[24..24 + compression_type.len()].copy_from_slice(compression_type.as_bytes());
    b[0x3c..0x40].copy_from_slice(&0x40u32.to_le_bytes());
    b.extend_from_slice(payload);
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn decodes_debian_like_flags() {
        let img = build_image(0, 0x201_0000, 0xa, &[0; 64]);
        let h = Header::parse(&img).unwrap();
        assert_eq!(h.page_size, PageSize::K4);
        assert!(h.phys_placement_anywhere);
        assert!(!h.big_endian);
        assert!(!h.efi_stub);
    }

    #[test]
    fn decompresses_gzip_and_zboot() {
        let img = build_image(0, 0x1000, 0xa, &[7; 256]);
        let gz = gzip(&img);
        assert_eq!(decompress(&gz).unwrap().as_ref(), img.as_slice());
        let zb = build_zboot("gzip", &gz);
        assert_eq!(decompress(&zb).unwrap().as_ref(), img.as_slice());
        assert!(matches!(decompress(&img).unwrap(), Cow::Borrowed(_)));
    }

    #[test]
    fn bomb_and_non_image_are_errors() {
        let gz = gzip(&vec![0u8; 1 << 20]);
        assert!(matches!(
            decompress_bounded(&gz, 4096),
            Err(Error::Decompress(compression::Error::TooLarge { .. }))
        ));
        assert!(matches!(
            decompress(&gz),
            Err(Error::NotAnImageInside { .. })
        ));
    }

    #[test]
    fn finds_the_banner_not_the_format_string() {
        let mut body =
            b"xx Linux version %s (%s)\0 Linux version 6.6.0-test (me@host) # SMP\0 yy Linux version 6.6.0-test (me@host) #1 SMP\n\0".to_vec();
        body.extend_from_slice(&[0; 16]);
        let img = parse_image(&build_image(0, 0x1000, 0xa, &body)).unwrap();
        assert_eq!(
            img.linux_banner.as_deref(),
            Some("Linux version 6.6.0-test (me@host) #1 SMP")
        );
    }

    #[test]
    fn truncated_zboot_is_an_error() {
        let img = build_image(0, 0x1000, 0xa, &[7; 256]);
        let zb = build_zboot("gzip", &gzip(&img));
        for len in 0..zb.len() {
            assert!(
                decompress(&zb[..len]).is_err() || len < 0x40 && !is_zboot(&zb[..len]),
                "len {len}"
            );
        }
    }
}
