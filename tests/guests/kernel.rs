//! A compute-bound kernel shared by the test tool (compiled to WebAssembly)
//! and the compute benchmark (compiled natively): softmax regression trained
//! by full-batch gradient descent on synthetic data, the digits training loop
//! without the host bridge. Plain loops, no allocation inside the epochs.

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
                *o = (*o - max).exp();
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
