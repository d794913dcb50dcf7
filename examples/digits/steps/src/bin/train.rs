//! Trains softmax (multinomial logistic) regression by mini-batch gradient
//! descent. Both matrix products of each batch go through the engine's
//! `gemm`; the loss of every epoch is reported as a metric.

use digits_steps::{CLASSES, Dataset, FEATURES, Model, Rng, softmax_rows};

#[derive(serde::Deserialize)]
struct Params {
    learning_rate: f32,
    epochs: u64,
    batch_size: usize,
    seed: u64,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let params: Params = weir_guest::params()?;
    if params.batch_size == 0 || params.learning_rate <= 0.0 {
        return Err("batch_size and learning_rate must be positive".into());
    }
    let data = Dataset::from_bytes(&std::fs::read(weir_guest::input("train"))?)?;
    let mut model = Model::zeros();
    let mut rng = Rng::new(params.seed);
    let mut order: Vec<usize> = (0..data.rows()).collect();
    for epoch in 0..params.epochs {
        rng.shuffle(&mut order);
        let mut loss = 0.0f64;
        for batch in order.chunks(params.batch_size) {
            loss += step(&mut model, &data, batch, params.learning_rate)?;
        }
        weir_guest::metric_at("loss", loss / data.rows() as f64, epoch);
        weir_guest::progress(epoch + 1, params.epochs);
    }
    let predictions = model.predict(&data.features, data.rows())?;
    let correct = predictions.iter().zip(&data.labels).filter(|(p, l)| p == l).count();
    weir_guest::metric("train_accuracy", correct as f64 / data.rows() as f64);
    std::fs::write(weir_guest::output("model"), model.to_bytes())?;
    Ok(())
}

/// One gradient step on `batch`; returns the batch's summed cross-entropy.
fn step(model: &mut Model, data: &Dataset, batch: &[usize], learning_rate: f32) -> Result<f64, weir_guest::Error> {
    let rows = batch.len();
    let x: Vec<f32> = batch.iter().flat_map(|&i| data.row(i).iter().copied()).collect();
    let mut probabilities = model.logits(&x, rows)?;
    softmax_rows(&mut probabilities);
    let mut loss = 0.0f64;
    // The gradient of the mean cross-entropy with respect to the logits: (P - Y) / rows.
    let mut gradient = probabilities;
    for (r, &i) in batch.iter().enumerate() {
        let label = data.labels[i] as usize;
        loss -= f64::from(gradient[r * CLASSES + label].max(1e-12)).ln();
        gradient[r * CLASSES + label] -= 1.0;
    }
    for g in gradient.iter_mut() {
        *g /= rows as f32;
    }
    // dW = Xᵀ · G (64 × 10), through the bridge with A transposed.
    let weight_gradient = weir_guest::native::gemm(FEATURES, CLASSES, rows, &x, &gradient, true, false)?;
    for (w, g) in model.weights.iter_mut().zip(&weight_gradient) {
        *w -= learning_rate * g;
    }
    for class in 0..CLASSES {
        let bias_gradient: f32 = gradient.iter().skip(class).step_by(CLASSES).sum();
        model.bias[class] -= learning_rate * bias_gradient;
    }
    Ok(loss)
}
