//! Records the target triple, for `atoll --version`.
fn main() {
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".into());
    println!("cargo:rustc-env=ATOLL_TARGET={target}");
}
