//! Shared by the runtime's custom-harness test binaries: each binary doubles as the shim, runs
//! its tests by name (a filter argument selects them) and builds busybox layers.

use std::path::Path;
use std::time::Instant;

/// Runs as the shim when invoked as `<self> shim --data-dir D ID`; otherwise runs `tests`
/// (those whose name contains the first non-flag argument) and exits 1 if any failed. All of
/// them need root, so like libtest's `#[ignore]` they only run with `--include-ignored` or
/// `--ignored`; `--list` lists them.
pub fn main(tests: &[(&str, fn())]) {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("shim") {
        // The shim's stderr is /dev/null: SKIFF_SHIM_TRACE=FILE captures libcontainer's traces.
        if let Ok(path) = std::env::var("SKIFF_SHIM_TRACE") {
            if let Ok(f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
            {
                tracing_subscriber::fmt()
                    .with_writer(std::sync::Mutex::new(f))
                    .with_env_filter("debug")
                    .with_ansi(false)
                    .init();
            }
        }
        skiff_runtime::shim::main(Path::new(&args[3]), &args[4]);
    }
    let filter = args.iter().skip(1).find(|a| !a.starts_with('-')).cloned();
    let selected = tests
        .iter()
        .filter(|(name, _)| filter.as_ref().is_none_or(|f| name.contains(f.as_str())));
    if args.iter().any(|a| a == "--list") {
        for (name, _) in selected {
            println!("{name}: test");
        }
        return;
    }
    // Like libtest's #[ignore]: every test here needs root, so a plain `cargo test` skips them
    // and `-- --include-ignored` (what scripts/test passes) runs them.
    if !args
        .iter()
        .any(|a| a == "--include-ignored" || a == "--ignored")
    {
        let n = selected
            .map(|(name, _)| {
                eprintln!("test {name} ... ignored, needs root: namespaces, mounts, cgroups")
            })
            .count();
        eprintln!("{n} test(s) ignored (run with -- --include-ignored as root)");
        return;
    }
    assert!(
        nix::unistd::geteuid().is_root(),
        "these tests need root (namespaces, mounts, cgroups)"
    );
    let mut failed = 0;
    for (name, f) in selected {
        eprintln!("test {name} ...");
        let t = Instant::now();
        if std::panic::catch_unwind(f).is_err() {
            failed += 1;
            eprintln!("test {name} FAILED");
        } else {
            eprintln!("test {name} ok ({:.1}s)", t.elapsed().as_secs_f64());
        }
    }
    if failed > 0 {
        eprintln!("{failed} test(s) failed");
        std::process::exit(1);
    }
}

/// A layer dir with /bin/busybox, `applets` linked to it, and a world-writable sticky /tmp.
pub fn busybox_layer(lower: &Path, applets: &[&str]) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(lower.join("bin")).unwrap();
    std::fs::create_dir_all(lower.join("tmp")).unwrap();
    std::fs::set_permissions(lower.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::copy("/bin/busybox", lower.join("bin/busybox")).unwrap();
    for a in applets {
        std::os::unix::fs::symlink("busybox", lower.join("bin").join(a)).unwrap();
    }
}
