#!/usr/bin/env bash
# Which CPU path trains the airbench nets fastest on this machine: TensorFlow's own (oneDNN) kernels, XLA
# (`--jit on`), or Keras on JAX (XLA too), in float32 and bf16, and what the thread settings change; each
# through benchmarks/throughput.py (synthetic data, after a warm-up), with the user and system CPU seconds
# of each measurement (GNU time), since a high system share (page faults, spinning threads) is a symptom.
#
#   benchmarks/cpu_paths.sh                    this CPU as it is
#   ISA=AVX2 benchmarks/cpu_paths.sh           an AVX-512 CPU held to AVX2 (oneDNN's ONEDNN_MAX_CPU_ISA and
#                                              XLA's --xla_cpu_max_isa): what an AVX2-only CPU would run
#   MODELS="airbench" STEPS=4 benchmarks/cpu_paths.sh
#
# Run it alone on the machine: a second process halves every figure. Prints one line per measurement.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
MODELS=${MODELS:-airbench airbench_small}
STEPS=${STEPS:-5}
POLICIES=${POLICIES:-float32}
if [ -n "${ISA:-}" ]; then
    export ONEDNN_MAX_CPU_ISA="$ISA"
    export XLA_FLAGS="${XLA_FLAGS:-} --xla_cpu_max_isa=$ISA"
fi
echo "cores $(nproc), ISA cap ${ISA:-none}, models $MODELS, policies $POLICIES"

measure() {  # label, "VAR=value ..." for the environment, then throughput.py's own arguments
    local label=$1 environment=$2; shift 2
    # shellcheck disable=SC2086  # the environment string is meant to split into VAR=value words
    /usr/bin/time -f "cpu: %U s user, %S s system, %e s wall, %F major / %R minor page faults" \
        env $environment "$PYTHON" benchmarks/throughput.py --model $MODELS --policy $POLICIES --steps "$STEPS" "$@" \
        2>&1 | grep -E '^\{|^cpu:|failed' | sed "s/^/$label: /"
}

measure "tensorflow onednn" "KERAS_BACKEND=tensorflow" --jit off
measure "tensorflow xla" "KERAS_BACKEND=tensorflow" --jit on
measure "jax (xla)" "KERAS_BACKEND=jax JAX_PLATFORMS=cpu"
measure "tensorflow onednn, 1 inter-op thread" "KERAS_BACKEND=tensorflow TF_NUM_INTEROP_THREADS=1" --jit off
measure "tensorflow onednn, OMP_WAIT_POLICY=passive" "KERAS_BACKEND=tensorflow OMP_WAIT_POLICY=passive" --jit off
