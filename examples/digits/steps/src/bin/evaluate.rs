//! Scores the model on the test set: accuracy, per-class precision and
//! recall as metrics, and the confusion matrix (rows: true class, columns:
//! predicted) as a CSV file.

use digits_steps::{CLASSES, Dataset, Model};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let model = Model::from_bytes(&std::fs::read(weir_guest::input("model"))?)?;
    let test = Dataset::from_bytes(&std::fs::read(weir_guest::input("test"))?)?;
    let predictions = model.predict(&test.features, test.rows())?;
    let mut confusion = [[0u32; CLASSES]; CLASSES];
    for (&truth, &predicted) in test.labels.iter().zip(&predictions) {
        confusion[truth as usize][predicted as usize] += 1;
    }
    let correct: u32 = (0..CLASSES).map(|c| confusion[c][c]).sum();
    let accuracy = f64::from(correct) / test.rows() as f64;
    weir_guest::metric("accuracy", accuracy);
    for class in 0..CLASSES {
        let predicted: u32 = (0..CLASSES).map(|t| confusion[t][class]).sum();
        let actual: u32 = confusion[class].iter().sum();
        let ratio = |part: u32, whole: u32| if whole == 0 { 0.0 } else { f64::from(part) / f64::from(whole) };
        weir_guest::metric(&format!("precision_{class}"), ratio(confusion[class][class], predicted));
        weir_guest::metric(&format!("recall_{class}"), ratio(confusion[class][class], actual));
    }
    let mut csv = String::from("true\\predicted");
    for class in 0..CLASSES {
        csv.push_str(&format!(",{class}"));
    }
    for (class, row) in confusion.iter().enumerate() {
        csv.push_str(&format!("\n{class}"));
        for count in row {
            csv.push_str(&format!(",{count}"));
        }
    }
    csv.push('\n');
    std::fs::write(weir_guest::output("confusion"), csv)?;
    println!("test accuracy: {accuracy:.4}");
    Ok(())
}
