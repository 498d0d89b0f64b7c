//! Frame-decoder fuzz driver shared by `tests/fuzz.rs` (ignored test) and
//! `examples/fuzz_frames.rs`. No external fuzzing engine: a seeded SplitMix64
//! generator makes random and mutated frames and feeds them through `FrameCodec`.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use ferry_remoting::{FrameCodec, LanguageCode, RemotingCommand, SerializeType};
use tokio_util::codec::Decoder;

/// Frame limit used while fuzzing: small, so length edits hit the limit often.
pub const FUZZ_MAX_FRAME: usize = 64 * 1024;

#[derive(Debug, Default, Clone)]
pub struct Report {
    /// Inputs fed to a fresh decoder.
    pub inputs: u64,
    /// Commands successfully decoded.
    pub frames: u64,
    /// Inputs that ended in a decode error.
    pub errors: u64,
    /// Inputs that ended waiting for more bytes (`Ok(None)` with bytes buffered).
    pub incomplete: u64,
    pub elapsed: Duration,
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    fn string(&mut self, max: usize) -> String {
        const ALPHABET: &[char] = &[
            'a', 'Z', '0', ' ', '"', '\\', '{', '}', ':', ',', 'é', '😀', '\n', '\u{0}',
        ];
        (0..self.below(max + 1))
            .map(|_| ALPHABET[self.below(ALPHABET.len())])
            .collect()
    }
}

fn random_command(rng: &mut Rng) -> RemotingCommand {
    let binary = rng.next() & 1 == 1;
    let mut cmd = RemotingCommand::request(rng.below(400) as i32)
        .with_opaque(rng.next() as i32)
        .with_version(rng.below(500) as i32)
        .with_language(LanguageCode::from_code(rng.below(16) as u8))
        .with_serialize_type(if binary {
            SerializeType::RocketMq
        } else {
            SerializeType::Json
        });
    cmd.flag = rng.below(4) as i32;
    if rng.below(3) == 0 {
        cmd = cmd.with_remark(rng.string(30));
    }
    for _ in 0..rng.below(6) {
        let (k, v) = (rng.string(10), rng.string(40));
        cmd.ext_fields.insert(k, v);
    }
    let body_len = rng.below(300);
    cmd.with_body(rng.bytes(body_len))
}

fn mutate(rng: &mut Rng, f: &mut Vec<u8>) {
    match rng.below(9) {
        // bit flip
        0 if !f.is_empty() => {
            let i = rng.below(f.len());
            f[i] ^= 1 << rng.below(8);
        }
        // random byte
        1 if !f.is_empty() => {
            let i = rng.below(f.len());
            f[i] = rng.next() as u8;
        }
        // truncation
        2 => {
            let keep = rng.below(f.len() + 1);
            f.truncate(keep);
        }
        // total-length field edits: random, off-by-small, huge, negative
        3 if f.len() >= 4 => {
            let cur = i32::from_be_bytes([f[0], f[1], f[2], f[3]]);
            let v = match rng.below(4) {
                0 => rng.next() as i32,
                1 => cur.wrapping_add(rng.below(9) as i32 - 4),
                2 => i32::MAX - rng.below(16) as i32,
                _ => -(rng.below(1000) as i32) - 1,
            };
            f[..4].copy_from_slice(&v.to_be_bytes());
        }
        // header-length edits (low 24 bits)
        4 if f.len() >= 8 => {
            let v = match rng.below(3) {
                0 => rng.below(0x0100_0000) as u32,
                1 => (f.len() as u32).wrapping_sub(rng.below(16) as u32),
                _ => rng.below(64) as u32,
            };
            f[5..8].copy_from_slice(&v.to_be_bytes()[1..]);
        }
        // serialize-type byte edits
        5 if f.len() >= 5 => {
            f[4] = [0u8, 1, 2, 0x7f, 0x80, 0xff][rng.below(6)];
        }
        // append garbage / a second frame's bytes
        6 => {
            let n = rng.below(64);
            f.extend(rng.bytes(n));
        }
        // insert or delete a byte in the middle (shifts every field after it)
        7 if !f.is_empty() => {
            let i = rng.below(f.len());
            if rng.next() & 1 == 0 {
                f.insert(i, rng.next() as u8);
            } else {
                f.remove(i);
            }
        }
        // overwrite an inner length (remark / ext / key / value length) with junk
        _ if f.len() > 24 => {
            let i = 8 + rng.below(f.len() - 12);
            let v = [0u32, 1, 0x7fff_ffff, 0xffff_ffff, rng.next() as u32][rng.below(5)];
            f[i..i + 4].copy_from_slice(&v.to_be_bytes());
        }
        _ => {}
    }
}

/// Decodes `input` fed in random chunks; asserts the decoder never grows the
/// buffer. Returns (frames, ended_in_error, ended_incomplete).
fn run_one(rng: &mut Rng, input: &[u8]) -> (u64, bool, bool) {
    let mut codec = FrameCodec::with_max_frame_length(FUZZ_MAX_FRAME);
    let mut buf = BytesMut::with_capacity(input.len());
    let mut frames = 0;
    let mut pos = 0;
    while pos < input.len() {
        let n = 1 + rng.below(input.len() - pos);
        buf.extend_from_slice(&input[pos..pos + n]);
        pos += n;
        loop {
            let cap = buf.capacity();
            match codec.decode(&mut buf) {
                Ok(Some(_)) => frames += 1,
                Ok(None) => {
                    assert_eq!(buf.capacity(), cap, "decoder reserved memory");
                    break;
                }
                Err(_) => return (frames, true, false),
            }
        }
    }
    match codec.decode_eof(&mut buf) {
        Ok(Some(_)) => (frames + 1, false, false),
        Ok(None) => (frames, false, false),
        Err(_) => (frames, false, true),
    }
}

/// Runs `iterations` inputs from `seed`. Panics (with the input in hex) if the
/// decoder panics on any of them.
pub fn run(iterations: u64, seed: u64) -> Report {
    let mut rng = Rng(seed);
    let mut report = Report::default();
    let start = Instant::now();
    for _ in 0..iterations {
        let mut input = match rng.below(10) {
            // pure random stream
            0 => {
                let n = rng.below(256);
                rng.bytes(n)
            }
            // valid frame(s), possibly several back to back
            _ => {
                let mut v = random_command(&mut rng)
                    .to_frame()
                    .map(|b| b.to_vec())
                    .unwrap_or_default();
                if rng.below(4) == 0 {
                    v.extend(
                        random_command(&mut rng)
                            .to_frame()
                            .map(|b| b.to_vec())
                            .unwrap_or_default(),
                    );
                }
                v
            }
        };
        for _ in 0..rng.below(4) {
            mutate(&mut rng, &mut input);
        }
        let seed_for_chunks = rng.next();
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            run_one(&mut Rng(seed_for_chunks), &input)
        }));
        match outcome {
            Ok((frames, err, incomplete)) => {
                report.inputs += 1;
                report.frames += frames;
                report.errors += u64::from(err);
                report.incomplete += u64::from(incomplete);
            }
            Err(_) => {
                let hex: String = input.iter().map(|b| format!("{b:02x}")).collect();
                panic!("decoder panicked on input {hex} (chunk seed {seed_for_chunks})");
            }
        }
    }
    report.elapsed = start.elapsed();
    report
}
