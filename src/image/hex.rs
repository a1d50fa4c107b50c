//! Serialising 64-bit addresses as hex strings ("0xffffffff81000000").
//!
//! JSON numbers above 2^53 lose precision in most consumers (jq, JavaScript),
//! and kernel virtual addresses are all above it; so every 64-bit address
//! in a report is a string, while sizes and 32-bit fields stay numbers.

use serde::Serializer;

pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{v:#x}"))
}

pub mod option {
    use serde::Serializer;

    pub fn serialize<S: Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_str(&format!("{v:#x}")),
            None => s.serialize_none(),
        }
    }
}
