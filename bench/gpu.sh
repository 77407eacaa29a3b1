#!/usr/bin/env bash
# The checks to run on a machine with an NVIDIA GPU, in one go (from the repository root):
#   1. install fastml over the Python there (numba-cuda, torch, pytest must already be installed);
#   2. the CUDA test suite on the device (tests/test_cuda_*.py: every CUDA kernel against the reference);
#   3. the bench suites' cuda peer, run once as tests;
#   4. `fastml bench`: cpu vs cuda vs torch (cpu and cuda) on every op and shape, including conv c/d at N=256.
# The CPU kernels compile in the background while step 2 runs. Logs, JSON and the PNG go to $OUT
# (default ./gpu-results). Usage: PYTHON=python3 OUT=/some/dir bash bench/gpu.sh
set -u
out=${OUT:-gpu-results}
py=${PYTHON:-python3}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
start=$SECONDS
stamp() { echo "== [$((SECONDS - start)) s] $*"; }

stamp "environment"
{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1
    nproc
    "$py" -c "import sys, numpy, numba, scipy; print(sys.version.split()[0], 'numpy', numpy.__version__, 'numba', numba.__version__, 'scipy', scipy.__version__)"
    "$py" -c "import numba_cuda; print('numba-cuda', numba_cuda.__version__)" 2>&1 | tail -1
    "$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" 2>&1 | tail -1
} 2>&1 | tee "$out/env.txt"

stamp "install"
"$py" -m pip install -q --no-deps --no-index --no-build-isolation -e . 2>&1 | tail -3
"$py" -m fastml.cli info 2>&1 | tee -a "$out/env.txt"

stamp "cpu kernels compiling in the background"
(timeout 420 "$py" -c "import fastml; fastml.warmup()" >"$out/warmup.txt" 2>&1; echo "warmup rc=$?" >>"$out/warmup.txt") &
warm=$!

stamp "CUDA test suite"
xdist=()
"$py" -c "import xdist" 2>/dev/null && xdist=(-n "${GPU_TEST_WORKERS:-6}")
timeout "${GPU_TEST_TIMEOUT:-300}" "$py" -m pytest -q -p no:cacheprovider "${xdist[@]}" -rfE \
    --junitxml="$out/cuda-tests.xml" tests/test_cuda_*.py 2>&1 | tee "$out/cuda-tests.txt" | tail -40

stamp "bench suites, cuda peer once as tests"
timeout "${GPU_SUITES_TIMEOUT:-150}" "$py" -m pytest -q -p no:cacheprovider --benchmark-disable -k cuda bench 2>&1 \
    | tee "$out/bench-suites.txt" | tail -15

stamp "waiting for the cpu kernels"
wait "$warm"
tail -2 "$out/warmup.txt"

stamp "fastml bench"
timeout "${GPU_BENCH_TIMEOUT:-240}" "$py" -m fastml.cli bench --repeats "${GPU_BENCH_REPEATS:-10}" \
    --json "$out/bench.json" --plot "$out/bench.png" 2>&1 | tee "$out/bench.txt"
stamp "done"
