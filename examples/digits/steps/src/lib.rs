//! What the digits steps share: the data formats between steps, a seeded
//! random source, and the softmax model.

use std::io::{Error, ErrorKind};

/// Pixels per image (8 × 8).
pub const FEATURES: usize = 64;
/// Digit classes.
pub const CLASSES: usize = 10;
/// The largest pixel value.
pub const MAX_PIXEL: f32 = 16.0;

/// Feature rows (scaled to 0..1) with their labels.
pub struct Dataset {
    pub features: Vec<f32>,
    pub labels: Vec<u8>,
}

impl Dataset {
    pub fn rows(&self) -> usize {
        self.labels.len()
    }

    pub fn row(&self, i: usize) -> &[f32] {
        &self.features[i * FEATURES..(i + 1) * FEATURES]
    }

    /// Binary form: row count (u32 LE), features (f32 LE), labels (u8).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = (self.rows() as u32).to_le_bytes().to_vec();
        bytes.extend(self.features.iter().flat_map(|v| v.to_le_bytes()));
        bytes.extend(&self.labels);
        bytes
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let bad = || Error::new(ErrorKind::InvalidData, "not a dataset file");
        let rows = u32::from_le_bytes(bytes.get(..4).ok_or_else(bad)?.try_into().map_err(|_| bad())?) as usize;
        let features_end = 4 + rows * FEATURES * 4;
        if bytes.len() != features_end + rows {
            return Err(bad());
        }
        Ok(Self { features: floats(&bytes[4..features_end]), labels: bytes[features_end..].to_vec() })
    }
}

/// Little-endian f32 values from bytes.
pub fn floats(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// Parses CSV rows of 64 pixels (0..=16), each followed by a label when
/// `labelled`. Errors name the 1-based line.
pub fn parse_csv(text: &str, labelled: bool) -> Result<Dataset, String> {
    let columns = FEATURES + usize::from(labelled);
    let mut data = Dataset { features: Vec::new(), labels: Vec::new() };
    for (index, line) in text.lines().enumerate().filter(|(_, line)| !line.trim().is_empty()) {
        let line_no = index + 1;
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != columns {
            return Err(format!("line {line_no}: expected {columns} columns, found {}", fields.len()));
        }
        for (column, field) in fields[..FEATURES].iter().enumerate() {
            let pixel: f32 = field.parse().map_err(|_| format!("line {line_no}, column {}: `{field}` is not a number", column + 1))?;
            if !(0.0..=MAX_PIXEL).contains(&pixel) {
                return Err(format!("line {line_no}, column {}: pixel {pixel} is outside 0..=16", column + 1));
            }
            data.features.push(pixel / MAX_PIXEL);
        }
        let label = if labelled {
            let field = fields[FEATURES];
            field.parse::<u8>().ok().filter(|&l| (l as usize) < CLASSES)
                .ok_or_else(|| format!("line {line_no}, column {columns}: label `{field}` is not a digit 0..=9"))?
        } else {
            0
        };
        data.labels.push(label);
    }
    if data.labels.is_empty() {
        return Err("no rows".into());
    }
    Ok(data)
}

/// A small seeded generator (SplitMix64): the same seed, the same sequence.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}

/// Softmax regression: `logits = x · W + b`, W is 64 × 10, row-major.
pub struct Model {
    pub weights: Vec<f32>,
    pub bias: Vec<f32>,
}

impl Model {
    pub fn zeros() -> Self {
        Self { weights: vec![0.0; FEATURES * CLASSES], bias: vec![0.0; CLASSES] }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        self.weights.iter().chain(&self.bias).flat_map(|v| v.to_le_bytes()).collect()
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let values = floats(bytes);
        if values.len() != FEATURES * CLASSES + CLASSES {
            return Err(Error::new(ErrorKind::InvalidData, "not a model file"));
        }
        Ok(Self { weights: values[..FEATURES * CLASSES].to_vec(), bias: values[FEATURES * CLASSES..].to_vec() })
    }

    /// Logits of `rows` rows of features, through the engine's `gemm`.
    pub fn logits(&self, features: &[f32], rows: usize) -> Result<Vec<f32>, weir_guest::Error> {
        let mut logits = weir_guest::native::gemm(rows, CLASSES, FEATURES, features, &self.weights, false, false)?;
        for row in logits.chunks_exact_mut(CLASSES) {
            for (logit, bias) in row.iter_mut().zip(&self.bias) {
                *logit += bias;
            }
        }
        Ok(logits)
    }

    /// The most likely class of each row.
    pub fn predict(&self, features: &[f32], rows: usize) -> Result<Vec<u8>, weir_guest::Error> {
        Ok(self.logits(features, rows)?.chunks_exact(CLASSES).map(argmax).collect())
    }
}

/// Index of the largest value.
pub fn argmax(values: &[f32]) -> u8 {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best as u8
}

/// Turns each row of logits into probabilities, in place.
pub fn softmax_rows(logits: &mut [f32]) {
    for row in logits.chunks_exact_mut(CLASSES) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0;
        for v in row.iter_mut() {
            *v = (*v - max).exp();
            sum += *v;
        }
        for v in row.iter_mut() {
            *v /= sum;
        }
    }
}
