"""Checks the raw CSV: 64 pixels in 0..=16 and a label 0..=9 per row. A bad
row fails the step with its line number. Writes the rows back unchanged."""

import weir
from digits import parse_csv

text = weir.read_input_text("raw")
try:
    data = parse_csv(text, labelled=True)
except ValueError as why:
    raise SystemExit(f"invalid digits data: {why}") from None
weir.metric("rows", data.rows)
weir.write_output("checked", text)
