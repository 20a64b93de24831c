"""Where CPU training trajectories part: the same tiny training under each kernel setting.

Trains the demo's model shape (a Llama of width 64 with 4 layers, random data, AdamW, 150 steps,
one thread, deterministic algorithms) in a fresh process per setting of the variables that
choose PyTorch's CPU kernels, and prints the final loss and a digest of the trained weights:
settings with the same digest computed the same floating-point trajectory on this CPU.

    python research/studies/kernel_paths.py [--json kernel-paths.json]

Settings: each library's own choice (what an unpinned process does), ATen's AVX2 kernels
(``ATEN_CPU_CAPABILITY=avx2``), MKL's AVX2 branch (``MKL_CBWR=AVX2``, honoured on Intel CPUs
only), MKL's cross-vendor branch (``MKL_CBWR=COMPATIBLE``) and the pin ``import hybridrec``
applies (:mod:`hybridrec.kernels`). The child processes never import hybridrec, so only the
variables given here apply. Results: docs/results.md, "Across CPUs".
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

CHILD = """
import hashlib, torch
from transformers import LlamaConfig, LlamaForCausalLM
torch.manual_seed(0); torch.use_deterministic_algorithms(True); torch.set_num_threads(1)
cfg = LlamaConfig(vocab_size=400, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                  num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64)
model = LlamaForCausalLM(cfg)
opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
data = torch.randint(0, 400, (4096, 24), generator=torch.Generator().manual_seed(1))
for step in range(150):
    batch = data[(step * 64) % 4096:(step * 64) % 4096 + 64]
    loss = model(input_ids=batch, labels=batch).loss
    opt.zero_grad(); loss.backward(); opt.step()
digest = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in model.parameters()))
print(torch.backends.cpu.get_cpu_capability(), repr(loss.item()), digest.hexdigest()[:16])
"""

KERNEL_VARS = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA")
SETTINGS: dict[str, dict[str, str]] = {
    "each library's own choice": {},
    "ATEN_CPU_CAPABILITY=avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
    "MKL_CBWR=AVX2": {"MKL_CBWR": "AVX2"},
    "MKL_CBWR=COMPATIBLE": {"MKL_CBWR": "COMPATIBLE"},
    "hybridrec's pin": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "COMPATIBLE",
                        "ONEDNN_MAX_CPU_ISA": "AVX2"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args()
    base = {k: v for k, v in os.environ.items() if k not in KERNEL_VARS}
    rows = []
    for name, extra in SETTINGS.items():
        started = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", CHILD], env={**base, **extra}, check=True,
                             capture_output=True, text=True).stdout.split()
        rows.append({"setting": name, "aten": out[0], "loss": float(out[1]), "digest": out[2],
                     "seconds": round(time.perf_counter() - started, 1)})
    first = {}
    print("| setting | ATen kernels | final loss | weights digest | same trajectory as | seconds |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        same = first.setdefault(row["digest"], row["setting"])
        print(f"| {row['setting']} | {row['aten']} | {row['loss']:.10f} | {row['digest']} | "
              f"{'–' if same == row['setting'] else same} | {row['seconds']} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
