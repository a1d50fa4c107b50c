//! Kernel image formats: detection and parsing, one module per format.
//!
//! Every parser takes a byte slice and returns a typed error on any malformed
//! input; none of them may panic, whatever the bytes (they are fuzzed).

pub mod bzimage;
