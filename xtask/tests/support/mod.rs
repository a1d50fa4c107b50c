//! Helpers shared by integration tests (each test file includes this with `mod support;`).
#![allow(dead_code)]

pub mod alpine_mirror;
