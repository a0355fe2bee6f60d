"""Print GoogLeNet's Table 1 and the same table for BN-Inception and
Inception-v3, as built by bnkernels.nn.inception (per image: batch 1).

    python examples/inception_summary.py
"""
from bnkernels.nn import inception

inception.googlenet().summary((1, 3, 224, 224))
print()
inception.bn_inception().summary((1, 3, 224, 224))
print()
inception.inception_v3().summary((1, 3, 299, 299))
