"""Deprecated keyword aliases: one warning and one mapping for each renamed
keyword (``relu=`` -> ``activation=``, ``seed=`` -> ``rng=``; ``flavor=`` ->
``numerics=`` is bnkernels.darknet.check_numerics)."""
import warnings
from collections.abc import Callable
from typing import Any


def renamed_keyword(old_name: str, old_value: Any, new_name: str, new_value: Any,
                    new_default: Any, convert: Callable[[Any], Any] = lambda value: value,
                    *, stacklevel: int = 3) -> Any:
    """The value of keyword new_name, given as new_value or through its
    deprecated alias old_name (None: not given), which warns
    (DeprecationWarning) and maps through convert. TypeError if both are
    given. stacklevel 3 points the warning at the caller of the function
    that calls this."""
    if old_value is None:
        return new_value
    if new_value is not new_default and new_value != new_default:
        raise TypeError(f"give {new_name}= only ({old_name}= is its deprecated alias), got "
                        f"{new_name}={new_value!r} and {old_name}={old_value!r}")
    new = convert(old_value)
    warnings.warn(f"{old_name}= is deprecated; use {new_name}={new!r}", DeprecationWarning,
                  stacklevel=stacklevel)
    return new
