//! Scales pixels to 0..1 and makes a stratified train/test split: the same
//! fraction of every class goes to the test set, chosen with a seeded shuffle.

use digits_steps::{CLASSES, Dataset, Rng, parse_csv};

#[derive(serde::Deserialize)]
struct Params {
    seed: u64,
    test_fraction: f64,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let params: Params = weir_guest::params()?;
    if !(0.0..1.0).contains(&params.test_fraction) {
        return Err(format!("test_fraction must be in [0, 1), got {}", params.test_fraction).into());
    }
    let data = parse_csv(&std::fs::read_to_string(weir_guest::input("checked"))?, true)?;
    let mut rng = Rng::new(params.seed);
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for class in 0..CLASSES as u8 {
        let mut rows: Vec<usize> = (0..data.rows()).filter(|&i| data.labels[i] == class).collect();
        rng.shuffle(&mut rows);
        let test_count = (rows.len() as f64 * params.test_fraction).round() as usize;
        test.extend_from_slice(&rows[..test_count]);
        train.extend_from_slice(&rows[test_count..]);
    }
    rng.shuffle(&mut train);
    let subset = |rows: &[usize]| Dataset {
        features: rows.iter().flat_map(|&i| data.row(i).iter().copied()).collect(),
        labels: rows.iter().map(|&i| data.labels[i]).collect(),
    };
    std::fs::write(weir_guest::output("train"), subset(&train).to_bytes())?;
    std::fs::write(weir_guest::output("test"), subset(&test).to_bytes())?;
    weir_guest::metric("train_rows", train.len() as f64);
    weir_guest::metric("test_rows", test.len() as f64);
    Ok(())
}
