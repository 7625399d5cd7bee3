//! Links the daemon with the code it runs laid out together.
//!
//! `link/startup-symbols.txt` names the functions the daemon runs from its
//! start to its first answers (recorded by `bench/startup-symbols`). lld
//! places them at the front of `.text`, so an idle daemon has ~2 MB of code
//! paged in rather than 64 KiB windows around every function it touched,
//! scattered over 15 MB (idle RSS 13.6 → 8.5 MB, see BENCHMARKS.md). A
//! name the build no longer has is skipped: a stale list costs memory,
//! never a build.
//!
//! Only where the linker is known to be lld: release builds for
//! x86_64-unknown-linux-gnu with Rust 1.90 or later (which links with its
//! own rust-lld) and no linker or link flags chosen by whoever builds.
//! Anywhere else the list is left out and the binary is the same as ever.

use std::env;
use std::path::Path;
use std::process::Command;

const LIST: &str = "link/startup-symbols.txt";

fn main() {
    println!("cargo:rerun-if-changed={LIST}");
    println!("cargo:rerun-if-changed=build.rs");
    let Ok(manifest_dir) = env::var("CARGO_MANIFEST_DIR") else {
        return;
    };
    let list = Path::new(&manifest_dir).join(LIST);
    if !list.is_file() || !links_with_rust_lld() {
        return;
    }
    println!(
        "cargo:rustc-link-arg-bin=wharf=-Wl,--symbol-ordering-file={}",
        list.display()
    );
    println!("cargo:rustc-link-arg-bin=wharf=-Wl,--no-warn-symbol-ordering");
}

fn links_with_rust_lld() -> bool {
    let var = |name: &str| env::var(name).unwrap_or_default();
    var("PROFILE") == "release"
        && var("TARGET") == "x86_64-unknown-linux-gnu"
        && env::var_os("RUSTC_LINKER").is_none()
        // `-C linker=…`, `-C link-arg=-fuse-ld=…`, `-C link-self-contained`…
        && !var("CARGO_ENCODED_RUSTFLAGS").contains("link")
        && rustc_minor().is_some_and(|minor| minor >= 90)
}

/// `y` of `rustc 1.y.z (…)`.
fn rustc_minor() -> Option<u32> {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let output = Command::new(rustc).arg("--version").output().ok()?;
    let version = String::from_utf8(output.stdout).ok()?;
    let mut numbers = version.split_whitespace().nth(1)?.split('.');
    (numbers.next()? == "1").then_some(())?;
    numbers.next()?.parse().ok()
}
