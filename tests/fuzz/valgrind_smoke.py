"""Every public function a few times, for a memory checker:

    PYTHONMALLOC=malloc valgrind --error-exitcode=1 --leak-check=full \\
        --errors-for-leak-kinds=definite --show-leak-kinds=definite \\
        python tests/fuzz/valgrind_smoke.py

(the README reports what it printed). Uses the leak test's list of calls.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent))

from test_reliability import public_calls  # noqa: E402

for name, call in public_calls().items():
    for _ in range(3):
        call()
print("ran", len(public_calls()), "public calls 3 times each")
