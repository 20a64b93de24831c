#!/usr/bin/env bash
# The README's GPU numbers, measured in one go on a machine with one CUDA device:
#
#     bash research/gpu/device_suite.sh OUT_DIR
#
# Needs hybridrec installed (with its dependencies) in the `python3` that holds a CUDA torch; no
# data set and no model weights (the models are randomly initialised at SmolLM2-135M's shape; the
# end-to-end fine-tune uses the in-process `synthetic` data set). Writes into OUT_DIR:
#   bench-gpu.json    `hybridrec bench gpu`: ranking, LoRA and fine-tuner throughput, matmul peak
#   scale-gpu.json    the `scale` suite's GPU part: a 999,000-context table with the local executor
#   versions.txt      the GPU, driver and package versions
# Each step runs under its own time limit, so one failing step still leaves the others' results.
set -uo pipefail
out=${1:?usage: device_suite.sh OUT_DIR}
mkdir -p "$out"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    python3 -c "import sys, torch, transformers, peft; print('python', sys.version.split()[0], '| torch', torch.__version__, '| transformers', transformers.__version__, '| peft', peft.__version__)"
} 2>&1 | tee "$out/versions.txt"

echo "== hybridrec bench gpu"
timeout 330 python3 -m hybridrec.cli bench gpu --out "$out/bench-gpu.json"
echo "rc=$?"

echo "== scale suite, GPU table"
timeout 200 python3 - "$out/scale-gpu.json" <<'PY'
import json, sys, time
from hybridrec_executors.scale_bench import gpu_table
started = time.perf_counter()
result = gpu_table(quick=False)
result["seconds"] = round(time.perf_counter() - started, 2)
text = json.dumps(result, indent=2)
print(text)
open(sys.argv[1], "w").write(text + "\n")
PY
echo "rc=$?"
