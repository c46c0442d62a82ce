//! Build script: tells the test suite whether PostgreSQL tests and browser tests can run.
//!
//! When `SHEQUN_TEST_POSTGRES_URL` is unset (or empty) at build time, it sets the cfg
//! `shequn_no_postgres`, and the PostgreSQL variants of the API tests are marked
//! `#[ignore]`, so `cargo test` reports them as ignored instead of passing without running.
//! Cargo reruns this script, and rebuilds the crate, whenever the variable changes.
//!
//! Likewise `SHEQUN_TEST_CHROMEDRIVER` (the path of Debian's `chromedriver`; `.ci/run` installs
//! `chromium` and `chromium-driver` and sets it): unset, the cfg `shequn_no_browser` marks the
//! browser tests ignored.
//!
//! And `SHEQUN_TEST_NATS_URL` (the local NATS server with JetStream; `.ci/run` starts it and
//! sets it): unset, the cfg `shequn_no_nats` marks the event export tests ignored.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(shequn_no_postgres)");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=SHEQUN_TEST_POSTGRES_URL");
    let configured = std::env::var_os("SHEQUN_TEST_POSTGRES_URL").is_some_and(|v| !v.is_empty());
    if !configured {
        println!("cargo::rustc-cfg=shequn_no_postgres");
    }
    println!("cargo::rustc-check-cfg=cfg(shequn_no_browser)");
    println!("cargo::rerun-if-env-changed=SHEQUN_TEST_CHROMEDRIVER");
    let browser = std::env::var_os("SHEQUN_TEST_CHROMEDRIVER").is_some_and(|v| !v.is_empty());
    if !browser {
        println!("cargo::rustc-cfg=shequn_no_browser");
    }
    println!("cargo::rustc-check-cfg=cfg(shequn_no_nats)");
    println!("cargo::rerun-if-env-changed=SHEQUN_TEST_NATS_URL");
    let nats = std::env::var_os("SHEQUN_TEST_NATS_URL").is_some_and(|v| !v.is_empty());
    if !nats {
        println!("cargo::rustc-cfg=shequn_no_nats");
    }
}
