//! Whether the binary under test can inject faults (`SHIPSHAPE_FAULT`): only a build with
//! the `fault-injection` feature can (`hack/test.sh` builds the tests with it; a release
//! build never carries it). The tests that kill the controller call
//! [`fault_injection_built`] first.

/// True when the `shipshape` binary these tests run was built with `fault-injection` (the
/// tests and the binary of one `cargo test` share the package's features). Without it, a
/// test that needs it is skipped with a note, or fails saying how to run it when
/// `CI=true` (where nothing may be skipped silently).
pub fn fault_injection_built(test: &str) -> bool {
    if cfg!(feature = "fault-injection") {
        return true;
    }
    let how = "built without the `fault-injection` feature, so SHIPSHAPE_FAULT does nothing; run `cargo test -p shipshape --features fault-injection` (hack/test.sh does)";
    let ci = matches!(std::env::var("CI").as_deref(), Ok("true" | "1"));
    assert!(!ci, "{test}: {how}");
    eprintln!("skipping {test}: {how}");
    false
}
