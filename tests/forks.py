"""The two Darknet forks: the names their vectors are stored under
(bnkernels/data/darknet_vectors/<fork>) and the numerics family of each."""

NUMERICS_OF = {"pjreddie": "darknet", "alexeyab": "darknet-alexeyab"}


def numerics_of(fork):
    """The bnkernels numerics= value of a fork ("pjreddie" or "alexeyab")."""
    return NUMERICS_OF[fork]
