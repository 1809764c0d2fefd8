#!/usr/bin/env bash
# Run every speed/memory benchmark at ViT-B/16 size, bf16 autocast, on a CUDA GPU.
#
# Usage: bash benchmarks/gpu.sh [extra arguments for every script, e.g. --repeats 10]
# Results: benchmarks/results/<name>-gpu-vitb16.{json,md}. Equality checks still run in float32 first.
# Nothing here has been run by the authors yet: no GPU was available when it was written.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu.sh: no CUDA device visible to torch; run the CPU benchmarks instead (see benchmarks/README.md)." >&2
    exit 1
fi

export PEFT_DOR_BENCH_SIZE=vit-b16 PEFT_DOR_BENCH_DEVICE=cuda PEFT_DOR_BENCH_DTYPE=bfloat16
export PEFT_DOR_BENCH_THREADS=0        # torch's default CPU threads (data decoding, tokenisation)
export NVIDIA_TF32_OVERRIDE=0          # float32 equality checks in real float32, not TF32
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
TAG=-gpu-vitb16

run() {
    echo "== $*" >&2
    python "$@" --tag "$TAG" "${EXTRA[@]}"
}
EXTRA=("$@")

run benchmarks/bench_train_step.py --repeats 10 --warmup 3
run benchmarks/bench_dor_overhead.py --repeats 10 --warmup 3
run benchmarks/bench_eval.py --images 2048 --batch-size 256 --classes 1000 --repeats 5 --warmup 2
run benchmarks/bench_feature_cache.py --images 1024 --classes 10 50 100 --views 4 --repeats 5
run benchmarks/bench_memory_1000_classes.py --repeats 5 --warmup 2
run benchmarks/bench_flops.py --matmul-sizes 4096 8192 --repeats 10 --warmup 3
run benchmarks/bench_vocabulary_cache.py          # all 117,798 WordNet nouns (needs wordnet-base or nltk data)
echo "gpu.sh: results in benchmarks/results/*${TAG}.md" >&2
