//! A compute-bound kernel shared by the test tool (compiled to WebAssembly)
//! and the compute benchmark (compiled natively): softmax regression trained
//! by full-batch gradient descent on synthetic data, the digits training loop
//! without the host bridge. Plain loops, no allocation inside the epochs.
//!
//! The exponential is computed here rather than by `f32::exp`, whose
//! implementations differ (the C library natively, Rust's `libm` in
//! WebAssembly): the comparison is of code generation, not of math libraries.

/// Samples, features and classes of the synthetic problem.
const SAMPLES: usize = 1024;
const FEATURES: usize = 64;
const CLASSES: usize = 10;

/// Trains for `epochs` and returns the final mean cross-entropy loss.
pub fn train(epochs: usize) -> f32 {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32
    };
    let x: Vec<f32> = (0..SAMPLES * FEATURES).map(|_| next()).collect();
    let labels: Vec<usize> = (0..SAMPLES).map(|i| (x[i * FEATURES] * CLASSES as f32) as usize % CLASSES).collect();
    let mut weights = vec![0.0f32; FEATURES * CLASSES];
    let mut logits = vec![0.0f32; SAMPLES * CLASSES];
    let mut gradient = vec![0.0f32; FEATURES * CLASSES];
    let mut loss = 0.0;
    for _ in 0..epochs {
        for (row, out) in x.chunks_exact(FEATURES).zip(logits.chunks_exact_mut(CLASSES)) {
            out.fill(0.0);
            for (feature, &value) in row.iter().enumerate() {
                let w = &weights[feature * CLASSES..(feature + 1) * CLASSES];
                for (o, &wk) in out.iter_mut().zip(w) {
                    *o += value * wk;
                }
            }
        }
        loss = 0.0;
        for (out, &label) in logits.chunks_exact_mut(CLASSES).zip(&labels) {
            let max = out.iter().copied().fold(f32::MIN, f32::max);
            let mut sum = 0.0;
            for o in out.iter_mut() {
                *o = exp(*o - max);
                sum += *o;
            }
            for o in out.iter_mut() {
                *o /= sum;
            }
            loss -= out[label].max(1e-12).ln();
            out[label] -= 1.0;
        }
        gradient.fill(0.0);
        for (row, delta) in x.chunks_exact(FEATURES).zip(logits.chunks_exact(CLASSES)) {
            for (feature, &value) in row.iter().enumerate() {
                let g = &mut gradient[feature * CLASSES..(feature + 1) * CLASSES];
                for (gk, &d) in g.iter_mut().zip(delta) {
                    *gk += value * d;
                }
            }
        }
        for (w, g) in weights.iter_mut().zip(&gradient) {
            *w -= 0.5 * g / SAMPLES as f32;
        }
    }
    loss / SAMPLES as f32
}

/// e^x for x ≤ 0 (softmax's shifted logits), relative error below 2e-7:
/// x = n·ln 2 + r with |r| ≤ ln 2 / 2, a degree-6 polynomial for e^r, and
/// 2^n put in the exponent bits.
fn exp(x: f32) -> f32 {
    let x = x.max(-87.0);
    let n = (x * std::f32::consts::LOG2_E).round();
    let r = x - n * std::f32::consts::LN_2;
    let p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
}
