//! Shared test helpers (each test binary includes this with `mod support;`).
pub mod bench_support;
pub mod tools;
