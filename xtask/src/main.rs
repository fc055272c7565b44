//! `cargo run -p skiff-xtask -- <task>`: repository maintenance tasks.
//!
//! - `protobuf`: regenerate `crates/skiff-api/src/protobuf/table.rs` from `xtask/data/`.
//! - `protobuf-vendor <kubernetes/api checkout> <kubernetes/apimachinery checkout>`: refresh
//!   `xtask/data/` from upstream checkouts (at the tag named in `xtask/data/README.md`).

use std::path::PathBuf;
use std::process::ExitCode;

use skiff_xtask::protobuf;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let result = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["protobuf"] => protobuf::generate(&root.join(protobuf::DATA_DIR)).and_then(|table| {
            let out = root.join(protobuf::TABLE_PATH);
            std::fs::write(&out, table).map_err(|e| protobuf::Error::Io(out.clone(), e))?;
            eprintln!("wrote {}", out.display());
            Ok(())
        }),
        ["protobuf-vendor", api, machinery] => protobuf::vendor(
            &PathBuf::from(api),
            &PathBuf::from(machinery),
            &root.join(protobuf::DATA_DIR),
        ),
        _ => {
            eprintln!(
                "usage: cargo run -p skiff-xtask -- protobuf\n       \
                 cargo run -p skiff-xtask -- protobuf-vendor <kubernetes/api dir> <kubernetes/apimachinery dir>"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
