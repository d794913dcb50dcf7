"""Scales pixels to 0..1 and makes a stratified train/test split: the same
fraction of every class goes to the test set, chosen with a seeded shuffle
(the same split as the Rust example's `prep` step, byte for byte)."""

import math

import weir
from digits import CLASSES, Rng, parse_csv

params = weir.params()
test_fraction = float(params["test_fraction"])
if not 0.0 <= test_fraction < 1.0:
    raise SystemExit(f"test_fraction must be in [0, 1), got {test_fraction}")
data = parse_csv(weir.read_input_text("checked"), labelled=True)
rng = Rng(int(params["seed"]))
train, test = [], []
for label in range(CLASSES):
    rows = [i for i, row_label in enumerate(data.labels) if row_label == label]
    rng.shuffle(rows)
    # Rounded half away from zero, as Rust's `f64::round`.
    test_count = math.floor(len(rows) * test_fraction + 0.5)
    test.extend(rows[:test_count])
    train.extend(rows[test_count:])
rng.shuffle(train)
weir.write_output("train", data.subset(train).to_bytes())
weir.write_output("test", data.subset(test).to_bytes())
weir.metric("train_rows", len(train))
weir.metric("test_rows", len(test))
