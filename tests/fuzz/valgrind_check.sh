#!/usr/bin/env bash
# valgrind memcheck over every public function (tests/fuzz/valgrind_smoke.py).
# CPython itself is not valgrind-clean (uninitialised bytes hashed at start-up,
# blocks it never frees at exit), so this fails only on a report with a frame
# in bnkernels: its extension module or the C kernels of csrc/.
#   bash tests/fuzz/valgrind_check.sh        (about 10 s)
set -euo pipefail
cd "$(dirname "$0")/../.."
python=$("${BNKERNELS_PYTHON:-python3}" -c "import sys; print(sys.executable)")  # not a shim: valgrind follows no script
log=$(mktemp)
trap 'rm -f "$log"' EXIT
PYTHONMALLOC=malloc valgrind --leak-check=full --show-leak-kinds=definite \
    --log-file="$log" "$python" tests/fuzz/valgrind_smoke.py
if grep -qE "_kernels|bnkernels|csrc/" "$log"; then
    grep -nE -B3 -A20 "_kernels|bnkernels|csrc/" "$log" | head -80
    echo "valgrind: reports in bnkernels' code (above)"
    exit 1
fi
grep -E "ERROR SUMMARY|definitely lost" "$log" || true
echo "valgrind: no report in bnkernels' code"
