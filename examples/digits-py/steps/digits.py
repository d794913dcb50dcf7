"""What the digits steps share: the data formats between steps, a seeded
random source, and the softmax model (its products through the engine's
``gemm``). The formats and the generator match the Rust example's
(``examples/digits/steps/src/lib.rs``) byte for byte, so either language's
steps can read the other's files and make the same split.
"""

import array
import math
import struct

import weir

FEATURES = 64
"""Pixels per image (8 × 8)."""
CLASSES = 10
"""Digit classes."""
MAX_PIXEL = 16.0
"""The largest pixel value."""


class Dataset:
    """Feature rows (pixels scaled to 0..1, ``array('f')``) with their labels (``bytes``)."""

    def __init__(self, features, labels):
        self.features = features
        self.labels = bytes(labels)

    @property
    def rows(self):
        return len(self.labels)

    def subset(self, rows):
        """The dataset of the given row indices, in that order."""
        features = array.array("f")
        for i in rows:
            features.extend(self.features[i * FEATURES : (i + 1) * FEATURES])
        return Dataset(features, bytes(self.labels[i] for i in rows))

    def to_bytes(self):
        """Binary form: row count (u32 LE), features (f32 LE), labels (u8)."""
        return struct.pack("<I", self.rows) + self.features.tobytes() + self.labels

    @classmethod
    def from_bytes(cls, data):
        if len(data) < 4:
            raise ValueError("not a dataset file")
        (rows,) = struct.unpack_from("<I", data)
        features_end = 4 + rows * FEATURES * 4
        if len(data) != features_end + rows:
            raise ValueError("not a dataset file")
        features = array.array("f")
        features.frombytes(data[4:features_end])
        return cls(features, data[features_end:])


def parse_csv(text, labelled):
    """Rows of 64 pixels (0..=16), each followed by a label when ``labelled``.
    A bad row raises ``ValueError`` naming its 1-based line."""
    columns = FEATURES + (1 if labelled else 0)
    features = array.array("f")
    labels = bytearray()
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = [field.strip() for field in line.split(",")]
        if len(fields) != columns:
            raise ValueError(f"line {line_no}: expected {columns} columns, found {len(fields)}")
        for column, field in enumerate(fields[:FEATURES], start=1):
            try:
                pixel = float(field)
            except ValueError:
                raise ValueError(f"line {line_no}, column {column}: `{field}` is not a number") from None
            if not 0.0 <= pixel <= MAX_PIXEL:
                raise ValueError(f"line {line_no}, column {column}: pixel {field} is outside 0..=16")
            features.append(pixel / MAX_PIXEL)
        label = 0
        if labelled:
            field = fields[FEATURES]
            if not (field.isdigit() and int(field) < CLASSES):
                raise ValueError(f"line {line_no}, column {columns}: label `{field}` is not a digit 0..=9")
            label = int(field)
        labels.append(label)
    if not labels:
        raise ValueError("no rows")
    return Dataset(features, labels)


_MASK = (1 << 64) - 1


class Rng:
    """SplitMix64: the same seed, the same sequence (as the Rust steps' ``Rng``)."""

    def __init__(self, seed):
        self.state = seed & _MASK

    def next_u64(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & _MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
        return z ^ (z >> 31)

    def shuffle(self, items):
        """Fisher–Yates, in place."""
        for i in range(len(items) - 1, 0, -1):
            j = self.next_u64() % (i + 1)
            items[i], items[j] = items[j], items[i]


class Model:
    """Softmax regression: ``logits = x · W + b``; ``W`` is 64 × 10, row-major."""

    def __init__(self, weights, bias):
        self.weights = weights
        self.bias = bias

    @classmethod
    def zeros(cls):
        return cls(array.array("f", bytes(4 * FEATURES * CLASSES)), array.array("f", bytes(4 * CLASSES)))

    def to_bytes(self):
        return self.weights.tobytes() + self.bias.tobytes()

    @classmethod
    def from_bytes(cls, data):
        values = array.array("f")
        values.frombytes(data)
        if len(values) != FEATURES * CLASSES + CLASSES:
            raise ValueError("not a model file")
        return cls(values[: FEATURES * CLASSES], values[FEATURES * CLASSES :])

    def logits(self, features, rows):
        """The logits of ``rows`` rows of features (``array('f')``), through the engine's ``gemm``."""
        logits = weir.native.gemm(rows, CLASSES, FEATURES, features, self.weights)
        bias = self.bias
        for start in range(0, rows * CLASSES, CLASSES):
            for c in range(CLASSES):
                logits[start + c] += bias[c]
        return logits

    def predict(self, features, rows):
        """The most likely class of each row."""
        logits = self.logits(features, rows)
        return bytes(argmax(logits[start : start + CLASSES]) for start in range(0, rows * CLASSES, CLASSES))


def argmax(values):
    """Index of the largest value (the first one on a tie)."""
    return max(range(len(values)), key=values.__getitem__)


def softmax_rows(logits):
    """Each row of ``CLASSES`` logits as probabilities: a new list."""
    probabilities = []
    for start in range(0, len(logits), CLASSES):
        row = logits[start : start + CLASSES]
        top = max(row)
        exps = [math.exp(v - top) for v in row]
        total = sum(exps)
        probabilities.extend(e / total for e in exps)
    return probabilities
