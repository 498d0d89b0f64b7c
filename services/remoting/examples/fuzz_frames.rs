//! Feeds random and mutated frames through `FrameCodec` and reports the count.
//!
//! `cargo run --release -p ferry-remoting --example fuzz_frames -- [iterations] [seed]`
//! (defaults: 1,000,000 iterations, a fixed seed). Exits non-zero on a panic.
#![allow(clippy::print_stdout)] // a command-line report

#[path = "../tests/support/fuzz.rs"]
mod fuzz;

fn main() {
    let mut args = std::env::args().skip(1);
    let iterations = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000u64);
    let seed = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0xF3AA_2024u64);
    let r = fuzz::run(iterations, seed);
    println!(
        "fuzzed {} inputs (seed {seed:#x}): {} frames decoded, {} errors, {} incomplete, 0 panics, in {:.2?} ({:.0} inputs/s)",
        r.inputs,
        r.frames,
        r.errors,
        r.incomplete,
        r.elapsed,
        r.inputs as f64 / r.elapsed.as_secs_f64().max(1e-9)
    );
}
