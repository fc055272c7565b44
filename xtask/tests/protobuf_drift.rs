//! The committed protobuf table is exactly what the generator makes of the vendored data.

use std::path::Path;

use skiff_xtask::protobuf;

#[test]
fn committed_table_matches_generator_output() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let generated = protobuf::generate(&root.join(protobuf::DATA_DIR)).expect("generates");
    let committed = std::fs::read_to_string(root.join(protobuf::TABLE_PATH)).expect("table.rs");
    if generated != committed {
        let (n, (want, got)) = generated
            .lines()
            .zip(committed.lines())
            .enumerate()
            .find(|(_, (a, b))| a != b)
            .unwrap_or((0, ("<length differs>", "")));
        panic!(
            "crates/skiff-api/src/protobuf/table.rs drifted from the generator (first difference at \
             line {}):\n  generated: {want}\n  committed: {got}\nrun `cargo run -p skiff-xtask -- protobuf`",
            n + 1
        );
    }
}
