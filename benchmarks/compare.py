"""Moved to ``python -m bnkernels bench``; this wrapper takes the same options
(see ``python -m bnkernels bench --help``; shapes are now NxCxHxW)."""
import sys
from bnkernels.tools import bench
sys.exit(bench.main())
