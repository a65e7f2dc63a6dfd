#!/usr/bin/env bash
# The GPU check: the airbench recipe (airbench94's width, 10 epochs, bf16) trained by Keras on JAX, on one
# GPU, with benchmarks/time_to_accuracy.py: train images/s, TFLOP/s against the chip's bf16 peak, time to
# 90/93/94% on CIFAR-10 (JPEG copy), and the XLA compile time apart. Made for the device machines, which
# have JAX but no TensorFlow and no network: Keras travels as wheels, the data as a copy.
#
#   benchmarks/gpu_check.sh --prepare        here, once: wheels into .whl/, the CIFAR-10 copy into .gpu_data/
#   device run: command "bash benchmarks/gpu_check.sh", carry [".whl", ".gpu_data"], timeout_s 540
#   benchmarks/gpu_check.sh --cpu-rehearsal  here: the same path on the CPU with JAX, a few steps (~2 min)
#
# Results: $OUT (the device tool's folder; runs/gpu_check here) gets gpu_check.json and gpu_check.md, a
# table to copy into BENCHMARKS.md. SEEDS="0 1 2" by default; EPOCHS=10.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}  # the device: python3
OUT=${OUT:-runs/gpu_check}
SEEDS=${SEEDS:-0 1 2}
EPOCHS=${EPOCHS:-10}
DATA=.gpu_data/cifar10-jpeg.tar.gz

if [ "${1:-}" = "--prepare" ]; then
    # The device's Python is 3.12 (x86-64): Keras and what it needs that the device may lack (optree needs
    # typing_extensions, which PyTorch brings there; carried anyway, 45 kB).
    "$PYTHON" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl keras==3.15.1 namex optree typing_extensions
    mkdir -p .gpu_data && cp ../shared/data/cifar10-jpeg.tar.gz "$DATA"
    du -sh .whl .gpu_data
    exit 0
fi

run=(--backend jax --recipe airbench --set "epochs=$EPOCHS" mixed_precision=bf16 --data "$DATA"
     --json "$OUT/gpu_check.json" --results "$OUT/gpu_check.md" --exclude-compile)
if [ "${1:-}" = "--cpu-rehearsal" ]; then
    DATA=${REHEARSAL_DATA:-../shared/data/cifar10-jpeg.tar.gz}
    run=(--backend jax --device cpu --recipe airbench_small --set epochs=2 batch_size=256 mixed_precision=bf16
         --subset 2048 --data "$DATA" --json "$OUT/gpu_check.json" --results "$OUT/gpu_check.md" --exclude-compile)
    SEEDS=0
fi
if ! "$PYTHON" -c "import keras" 2>/dev/null; then  # the device: Keras from the carried wheels
    "$PYTHON" -m pip install -q --no-index --no-deps --target /tmp/keras-site .whl/*.whl
    export PYTHONPATH=/tmp/keras-site
fi
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" KERAS_BACKEND=jax
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # JAX takes GPU memory as it needs it (the whole set is 150 MB)
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv 2>/dev/null || echo "no nvidia-smi: CPU"
# shellcheck disable=SC2086
"$PYTHON" benchmarks/time_to_accuracy.py "${run[@]}" --seeds $SEEDS \
    --reference "airbench94 (PyTorch, A100, as published)" 94.01 3.29 150500
