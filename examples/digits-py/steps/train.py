"""Trains softmax (multinomial logistic) regression by mini-batch gradient
descent. Both matrix products of each batch go through the engine's `gemm`
(the sandbox runs pure Python: numeric work belongs in natives); the loss of
every epoch is reported as a metric."""

import array
import math

import weir
from digits import CLASSES, FEATURES, Dataset, Model, Rng, softmax_rows

params = weir.params()
learning_rate = float(params["learning_rate"])
epochs = int(params["epochs"])
batch_size = int(params["batch_size"])
if batch_size <= 0 or learning_rate <= 0:
    raise SystemExit("batch_size and learning_rate must be positive")


def step(model, data, batch):
    """One gradient step on the rows of `batch`; returns their summed cross-entropy."""
    rows = len(batch)
    x = data.subset(batch).features
    gradient = softmax_rows(model.logits(x, rows))
    loss = 0.0
    # The gradient of the mean cross-entropy with respect to the logits: (P - Y) / rows.
    for r, i in enumerate(batch):
        at = r * CLASSES + data.labels[i]
        loss -= math.log(max(gradient[at], 1e-12))
        gradient[at] -= 1.0
    gradient = array.array("f", [g / rows for g in gradient])
    # dW = Xᵀ · G (64 × 10), through the bridge with X transposed.
    weight_gradient = weir.native.gemm(FEATURES, CLASSES, rows, x, gradient, trans_a=True)
    model.weights = array.array("f", [w - learning_rate * g for w, g in zip(model.weights, weight_gradient)])
    for c in range(CLASSES):
        model.bias[c] -= learning_rate * sum(gradient[c::CLASSES])
    return loss


data = Dataset.from_bytes(weir.read_input("train"))
model = Model.zeros()
rng = Rng(int(params["seed"]))
order = list(range(data.rows))
for epoch in range(epochs):
    rng.shuffle(order)
    loss = sum(step(model, data, order[start : start + batch_size]) for start in range(0, data.rows, batch_size))
    weir.metric("loss", loss / data.rows, step=epoch)
    weir.progress(epoch + 1, epochs)
predictions = model.predict(data.features, data.rows)
correct = sum(1 for predicted, label in zip(predictions, data.labels) if predicted == label)
weir.metric("train_accuracy", correct / data.rows)
weir.write_output("model", model.to_bytes())
