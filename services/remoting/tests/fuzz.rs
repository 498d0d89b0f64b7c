//! Frame-decoder fuzzing. The quick test runs by default; the 1,000,000-input run is
//! `#[ignore]`d:
//! `cargo test --release -p ferry-remoting --test fuzz -- --ignored --nocapture`
//! (or `cargo run --release -p ferry-remoting --example fuzz_frames -- 1000000`).

#[path = "support/fuzz.rs"]
mod fuzz;

#[test]
fn fuzz_frames_quick() {
    let r = fuzz::run(20_000, 0x5eed);
    assert_eq!(r.inputs, 20_000);
    assert!(r.frames > 0 && r.errors > 0, "{r:?}");
}

#[test]
#[ignore = "long: 1,000,000 random and mutated frames"]
fn fuzz_frames_million() {
    let seed = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0xF3AA_2024);
    let r = fuzz::run(1_000_000, seed);
    eprintln!(
        "fuzzed {} inputs (seed {seed:#x}): {} frames decoded, {} errors, {} incomplete, 0 panics, in {:.2?}",
        r.inputs, r.frames, r.errors, r.incomplete, r.elapsed
    );
    assert_eq!(r.inputs, 1_000_000);
}
