#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| nearhost_fuzzing::agent_protocol(data));
