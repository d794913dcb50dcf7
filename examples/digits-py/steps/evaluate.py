"""Scores the model on the test set: accuracy, per-class precision and
recall as metrics, and the confusion matrix (rows: true class, columns:
predicted) as a CSV file."""

import weir
from digits import CLASSES, Dataset, Model

model = Model.from_bytes(weir.read_input("model"))
test = Dataset.from_bytes(weir.read_input("test"))
predictions = model.predict(test.features, test.rows)
confusion = [[0] * CLASSES for _ in range(CLASSES)]
for truth, predicted in zip(test.labels, predictions):
    confusion[truth][predicted] += 1
accuracy = sum(confusion[c][c] for c in range(CLASSES)) / test.rows
weir.metric("accuracy", accuracy)


def ratio(part, whole):
    return part / whole if whole else 0.0


for c in range(CLASSES):
    weir.metric(f"precision_{c}", ratio(confusion[c][c], sum(row[c] for row in confusion)))
    weir.metric(f"recall_{c}", ratio(confusion[c][c], sum(confusion[c])))
lines = ["true\\predicted," + ",".join(str(c) for c in range(CLASSES))]
lines += [f"{c}," + ",".join(str(count) for count in row) for c, row in enumerate(confusion)]
weir.write_output("confusion", "\n".join(lines) + "\n")
print(f"test accuracy: {accuracy:.4f}")
