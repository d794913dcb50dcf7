//! Fuzzes the manifest parser and validator: any text must give a pipeline
//! or a located validation error, never a panic, a hang or unbounded memory.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let _ = weir::Pipeline::from_manifest_str(text, Path::new("/nonexistent/fuzz/pipeline.toml"));
    let _ = weir::parse_size(text);
    let _ = weir::parse_duration(text);
});
