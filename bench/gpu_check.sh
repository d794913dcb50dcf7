#!/usr/bin/env bash
# The GPU checks and figures of issue 19, on a machine with an NVIDIA GPU,
# CUDA's libraries, python3 with numpy, and no Rust toolchain. KIT is what
# bench/gpu_kit.sh built; logs and tables go to OUT.
#
#   bench/gpu_check.sh KIT OUT [SECTION]
#
# Sections (all of them when none is named, each in its own process so that
# one failing does not stop the rest):
#   products    products on the GPU equal a float64 reference: values, tensors
#               kept on the device, mixed, and files, for every transpose, and
#               for a 2100 × 2050 × 2080 product
#   handles     tensor handles on the GPU are valid only in their own step;
#               misuse is an error value
#   leaks       160 steps each leave a 1 GiB product on the device for the
#               engine to free: were any not freed, the later steps would run
#               out of device memory
#   scheduling  a GPU step and a CPU step run side by side; two GPU steps never
#               overlap on one slot, and do with two slots
#   startup     what a step's first product on the GPU costs: one 256³
#               product in a step holding a GPU and in one without
#   digits      the digits example's `train` step with `gemm` on the GPU vs the CPU
#   bridge      the bridge bench's GPU group: cuBLAS 4096³ direct vs through
#               the bridge
#
# GPU_CHECK_BENCH=FILTER picks the bridge bench's groups (default: gemm_gpu,
# all of the GPU ones). GPU_CHECK_ON_CPU=1 tries the script on a machine
# without a GPU: steps that ask for one then run on the CPU, and the checks
# that they did not are skipped.
set -euo pipefail
kit=$(realpath "$1")
out=$(realpath "$2")
shift 2
repo=$(pwd)
mkdir -p "$out"
export WEIR_TEST_GUESTS=$kit/guests
weir=$kit/weir
# cuBLAS from the toolkit or from the Python wheel, whichever is found first.
cublas=$(find /usr/local /usr/lib /opt -name 'libcublas.so.1[0-9]*' 2>/dev/null | sort | head -1)
export LD_LIBRARY_PATH="$(dirname "$cublas"):${LD_LIBRARY_PATH:-}"

for packed in "$kit"/weir.gz "$kit"/bridge.gz; do
    if [ "$packed" -nt "${packed%.gz}" ]; then
        gzip -dkf "$packed" && touch "${packed%.gz}" && chmod +x "${packed%.gz}"
    fi
done

if [ $# -eq 0 ]; then
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
    echo "cuBLAS: $cublas"
    "$weir" --version
    # One project directory for all sections: the guest is compiled once.
    export GPU_CHECK_WORK=$(mktemp -d)
    failed=""
    for section in products handles leaks scheduling startup digits bridge; do
        printf '\n== %s\n' "$section"
        "$0" "$kit" "$out" "$section" || failed="$failed $section"
    done
    [ -z "$failed" ] && echo "all sections passed" || { echo "FAILED:$failed"; exit 1; }
    exit 0
fi

work=${GPU_CHECK_WORK:-$(mktemp -d)}
cd "$work"
cp "$kit/guests/wasm32-wasip2/release/sdk-tool.wasm" sdk-tool.wasm
# `weir run --json` in the project here, workspace ws; prints the summary.
run() { "$weir" run "$@" --workspace ws --json; }

# The sections (their bodies are not indented: they hold heredocs).
products() {
# Small products for every transpose, and a larger one (4.3 Mi values in each
# operand and in the product).
for case in "300 200 500 false false" "300 200 500 true false" "300 200 500 false true" \
    "300 200 500 true true" "2100 2050 2080 false true"; do
    set -- $case
    python3 - "$@" <<'EOF'
import sys, numpy as np
m, n, k = map(int, sys.argv[1:4])
ta, tb = sys.argv[4] == "true", sys.argv[5] == "true"
rng = np.random.default_rng(m * n * k + 2 * ta + tb)
a = rng.standard_normal((m, k), dtype=np.float32)
b = rng.standard_normal((k, n), dtype=np.float32)
np.save("a.npy", a); np.save("b.npy", b)
(a.T if ta else a).astype("<f4").tofile("a.f32")
(b.T if tb else b).astype("<f4").tofile("b.f32")
EOF
    cat > products.toml <<EOF
name = "gpu-products"
[inputs]
a = "a.f32"
b = "b.f32"
[steps.mul]
module = "sdk-tool.wasm"
args = ["tensors"]
natives = ["gemm"]
resources = { gpu = 1 }
limits = { memory = "512MiB" }
inputs = { a = "inputs.a", b = "inputs.b" }
params = { m = $1, n = $2, k = $3, trans_a = $4, trans_b = $5 }
outputs = { c_values = "file", c_tensors = "file", c_mixed = "file", c_file = "file", result = "file" }
EOF
    run products.toml --no-cache > products.json
    python3 - "$weir" "$*" <<'EOF'
import json, os, subprocess, sys, numpy as np
weir, case = sys.argv[1], sys.argv[2]
summary = json.load(open("products.json"))
step = next(s for s in summary["steps"] if s["step"] == "mul")
assert step["status"] == "ran", step
assert not step["warnings"] or os.environ.get("GPU_CHECK_ON_CPU"), f"warnings: {step['warnings']}"
assert step["native_failures"] == 0, step
want = np.load("a.npy").astype(np.float64) @ np.load("b.npy").astype(np.float64)
for output in ["c_values", "c_tensors", "c_mixed", "c_file"]:
    raw = subprocess.run([weir, "cat", step["outputs"][output], "--workspace", "ws"], check=True, capture_output=True).stdout
    got = np.frombuffer(raw, dtype="<f4").reshape(want.shape)
    err = np.linalg.norm(got - want) / np.linalg.norm(want)
    assert np.isfinite(got).all() and err < 1e-5, f"{output} ({case}): relative error {err}"
    print(f"m n k, transposes {case}: {output} relative error {err:.2e}")
EOF
done
}

handles() {
cat > handles.toml <<'EOF'
name = "gpu-handles"
[steps.first]
module = "sdk-tool.wasm"
args = ["tensor-handle"]
resources = { gpu = 1 }
outputs = { result = "file" }
[steps.second]
module = "sdk-tool.wasm"
args = ["tensor-misuse"]
natives = ["gemm"]
resources = { gpu = 1 }
inputs = { handle = "first.result" }
outputs = { result = "file" }
limits = { memory = "64MiB" }
EOF
run handles.toml > handles.json
python3 - "$weir" <<'EOF'
import json, subprocess, sys
weir = sys.argv[1]
steps = {s["step"]: s for s in json.load(open("handles.json"))["steps"]}
cat = lambda d: subprocess.run([weir, "cat", d, "--workspace", "ws"], check=True, capture_output=True, text=True).stdout
handle = cat(steps["first"]["outputs"]["result"]).removeprefix("ok: ")
lines = cat(steps["second"]["outputs"]["result"]).removeprefix("ok: ").splitlines()
expected = [
    ("foreign download: ", f"no tensor {handle} in this step"),
    ("foreign operand: ", f"no tensor {handle} in this step"),
    ("released download: ", "a tensor belongs to the step execution that made it"),
    ("bad shape: ", "A has 3 values; m × k = 2 × 2 needs 4"),
    ("bad tensor shape: ", "A has 4 values; m × k = 3 × 3 needs 9"),
    ("outside file: ", "outside the step's directories"),
    ("too big: ", "does not fit: the step's memory limit leaves"),
]
print("\n".join(lines))
assert len(lines) == len(expected), lines
for line, (what, message) in zip(lines, expected):
    assert line.startswith(what) and message in line, f"expected {what}…{message}…, got {line}"
assert steps["second"]["native_failures"] == 7, steps["second"]
print("handles: all seven misuses answered with an error value")
EOF
}

leaks() {
python3 - <<'EOF'
with open("leaks.toml", "w") as manifest:
    manifest.write('name = "gpu-leaks"\n')
    for i in range(160):
        manifest.write(f'[steps.leave{i}]\nmodule = "sdk-tool.wasm"\nargs = ["tensor-leave", "16384", "{i}"]\n'
                       'natives = ["gemm"]\nresources = { gpu = 1 }\nlimits = { memory = "1536MiB" }\n'
                       'outputs = { result = "file" }\n')
EOF
started=$(date +%s.%N)
run leaks.toml --no-cache --jobs 4 --gpus 4 > leaks.json
python3 - "$weir" "$started" <<'EOF'
import json, os, subprocess, sys, time
weir, started = sys.argv[1], float(sys.argv[2])
steps = json.load(open("leaks.json"))["steps"]
assert len(steps) == 160, len(steps)
for s in steps:
    assert s["status"] == "ran" and s["native_failures"] == 0, s
    assert not s["warnings"] or os.environ.get("GPU_CHECK_ON_CPU"), s
said = subprocess.run([weir, "cat", steps[-1]["outputs"]["result"], "--workspace", "ws"], capture_output=True, text=True).stdout
assert said.startswith("ok: left tensor"), said
print(f"leaks: 160 steps left 160 GiB of products in {time.time() - started:.1f} s; each was freed with its step ({said})")
EOF
}

scheduling() {
# Two steps of kept 4096³ products on the GPU (their names in their arguments,
# so that their cache keys differ) and one of 1024³ products on the CPU.
{
    echo 'name = "gpu-side-by-side"'
    for step in gpu_a gpu_b; do
        printf '[steps.%s]\nmodule = "sdk-tool.wasm"\nargs = ["bench-gemm-kept", "4096", "300", "%s"]\n' "$step" "$step"
        printf 'natives = ["gemm"]\nresources = { gpu = 1 }\nlimits = { memory = "1GiB" }\noutputs = { result = "file" }\n'
    done
    printf '[steps.cpu]\nmodule = "sdk-tool.wasm"\nargs = ["bench-gemm", "1024", "100"]\n'
    printf 'natives = ["gemm"]\nlimits = { memory = "1GiB" }\noutputs = { result = "file" }\n'
} > side.toml
for slots in 1 2; do
    run side.toml --no-cache --jobs 4 --gpus "$slots" > "side_$slots.json"
    python3 - "$slots" <<'EOF'
import json, os, sys
slots = int(sys.argv[1])
on_gpu = not os.environ.get("GPU_CHECK_ON_CPU")
steps = {s["step"]: s for s in json.load(open(f"side_{slots}.json"))["steps"]}
window = {}
for name, s in steps.items():
    assert s["status"] == "ran" and (not s["warnings"] or not on_gpu), s
    window[name] = (s["metrics"]["started_ms"], s["metrics"]["ended_ms"])
origin = min(start for start, _ in window.values())
for name, (start, end) in window.items():
    print(f"slots {slots}: {name:6} ran from {start - origin:6.0f} to {end - origin:6.0f} ms")
overlap = lambda x, y: window[x][0] < window[y][1] and window[y][0] < window[x][1]
for g in ["gpu_a", "gpu_b"]:
    start, end = window[g]
    tflops = 300 * 2 * 4096**3 / ((end - start) / 1e3) / 1e12
    print(f"slots {slots}: {g} {tflops:.1f} TFLOP/s over its window")
    assert tflops > 5 or not on_gpu, "too slow for a GPU: did it run on the CPU?"
assert overlap("cpu", "gpu_a") or overlap("cpu", "gpu_b"), "the CPU step waited for the GPU steps"
if slots == 1:
    assert not overlap("gpu_a", "gpu_b"), "two GPU steps ran at once on one slot"
else:
    assert overlap("gpu_a", "gpu_b"), "two slots should let the GPU steps overlap"
print(f"slots {slots}: scheduling as the slots say")
EOF
done

}

startup() {
for gpu in 1 0; do
    cat > startup.toml <<EOF
name = "gpu-startup"
[steps.one]
module = "sdk-tool.wasm"
args = ["bench-gemm", "256", "1"]
natives = ["gemm"]
resources = { gpu = $gpu }
outputs = { result = "file" }
EOF
    for i in 1 2 3; do
        run startup.toml --no-cache | python3 -c 'import json, sys
s = next(s for s in json.load(sys.stdin)["steps"] if s["step"] == "one")
print("gpu = %s: the step took %.1f ms" % (sys.argv[1], s["duration_ms"]))' "$gpu"
    done
done
}

digits() {
cp -r "$repo/examples/digits" digits
mkdir -p digits/build && cp "$kit"/digits/*.wasm digits/build/
sed 's/^\[steps.train\]$/[steps.train]\nresources = { gpu = 1 }/' digits/pipeline.toml > digits/pipeline-gpu.toml
grep -q 'gpu = 1' digits/pipeline-gpu.toml
"$weir" run digits/pipeline.toml --workspace digits/ws > /dev/null
for round in 1 2; do
    for device in cpu gpu; do
        manifest=digits/pipeline.toml
        [ "$device" = gpu ] && manifest=digits/pipeline-gpu.toml
        for i in 1 2 3; do
            "$weir" run "$manifest" --workspace digits/ws --rerun train --json |
                python3 -c 'import json, os, sys
s = next(s for s in json.load(sys.stdin)["steps"] if s["step"] == "train")
assert s["status"] == "ran" and (not s["warnings"] or os.environ.get("GPU_CHECK_ON_CPU")), s
print(sys.argv[1], s["duration_ms"], s["metrics"]["loss"], s["metrics"]["train_accuracy"])' "$device" >> train.txt
        done
    done
done
python3 - <<'EOF'
import statistics
rows = [line.split() for line in open("train.txt")]
for device in ["cpu", "gpu"]:
    mine = [r for r in rows if r[0] == device]
    times = sorted(float(r[1]) for r in mine)
    print(f"train on {device}: median {statistics.median(times):.1f} ms ({times[0]:.1f}–{times[-1]:.1f}), "
          f"final loss {mine[-1][2]}, train accuracy {mine[-1][3]}")
EOF

}

bridge() {
cd "$repo"
CARGO_TARGET_DIR="$work/target" "$kit/bridge" --bench "${GPU_CHECK_BENCH:-gemm_gpu}" --warm-up-time 2 --measurement-time 5 2>&1 |
    tee "$out/bridge.txt"
python3 - "$out/bridge.txt" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
rates = {}
for name, unit_value, unit in re.findall(r"gemm_gpu_4096/(\w+)\s+time:.*?\n\s+thrpt:\s+\[\s*[\d.]+ \w+/s\s+([\d.]+) (\w)elem/s", text):
    rates[name] = float(unit_value) * {"G": 1e-3, "T": 1.0, "M": 1e-6}[unit]
for name, tflops in rates.items():
    print(f"{name:24} {tflops:7.2f} TFLOP/s  {tflops / rates['direct_cublas']:.3f} of direct")
EOF
}

"$1"
