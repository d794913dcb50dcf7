"""Predicts the digit of every row of one scoring batch (a CSV of 64 pixels
per row, no label). Run as a map step: once per batch file."""

import weir
from digits import Model, parse_csv

model = Model.from_bytes(weir.read_input("model"))
try:
    batch = parse_csv(weir.read_input_text("batch"), labelled=False)
except ValueError as why:
    raise SystemExit(f"invalid scoring batch: {why}") from None
predictions = model.predict(batch.features, batch.rows)
weir.write_output("predictions", "".join(f"{p}\n" for p in predictions))
weir.metric("rows", batch.rows)
