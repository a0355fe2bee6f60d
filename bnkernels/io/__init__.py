"""Files: Darknet's network descriptions (.cfg) and parameters (.weights), in
``bnkernels.io.darknet``. ``import bnkernels`` does not load this package;
``bnkernels.io`` does, on first use."""
from bnkernels.io import darknet
from bnkernels.io.darknet import DarknetFileError, load_weights, read_cfg, save_weights

__all__ = ["DarknetFileError", "darknet", "load_weights", "read_cfg", "save_weights"]
