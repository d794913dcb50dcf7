"""A complete weir step in Python: standardizes a column of numbers.

Contract (the manifest entry is in `weir new --python`'s pipeline.toml):
- input `values`: a text file, one number per line;
- output `scaled`: the values as z-scores times the `scale` parameter;
- metrics `mean` and `std`; progress as it goes.
"""

import math

import weir

scale = float(weir.params()["scale"])
values = []
for number, line in enumerate(weir.read_input_text("values").splitlines(), start=1):
    if not line.strip():
        continue
    try:
        values.append(float(line))
    except ValueError:
        raise SystemExit(f"line {number}: `{line}` is not a number") from None
if not values:
    raise SystemExit("input `values` holds no numbers")
mean = sum(values) / len(values)
std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
weir.metric("mean", mean)
weir.metric("std", std)

lines = []
for i, value in enumerate(values):
    z = (value - mean) / std if std > 0 else 0.0
    lines.append(f"{z * scale}\n")
    weir.progress(i + 1, len(values))
weir.write_output("scaled", "".join(lines))
