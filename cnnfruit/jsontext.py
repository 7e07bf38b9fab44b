"""JSON from files cnnfruit did not necessarily write: nesting bounded before parsing, every error ours.

Python's parser recurses once per level, so `[[[[...` 100,000 deep raised RecursionError (a
traceback) from a checkpoint's text fields; shallower but still deep values could overflow the
stack later, wherever something walks them. cnnfruit's own JSON is at most 4 levels deep.
"""
import json
import re

import numpy as np

from .errors import CnnfruitError

MAX_DEPTH = 20
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)


def depth(text):
    """How deeply the arrays and objects of JSON text nest (strings skipped), in linear time."""
    brackets = np.frombuffer(_STRINGS.sub("", text).encode("utf-8", "surrogatepass"), dtype=np.uint8)
    steps = np.zeros(len(brackets), dtype=np.int64)
    steps[(brackets == ord("[")) | (brackets == ord("{"))] = 1
    steps[(brackets == ord("]")) | (brackets == ord("}"))] = -1
    return int(np.cumsum(steps).max(initial=0))


def parse(text, what):
    """The value of JSON text; CnnfruitError saying `what` is wrong if it is not JSON or nests too deeply."""
    if depth(text) > MAX_DEPTH:
        raise CnnfruitError(f"{what} is nested more than {MAX_DEPTH} levels deep")
    try:
        return json.loads(text)
    except RecursionError:  # not reached after the depth check; kept so no input can give a traceback
        raise CnnfruitError(f"{what} is nested more than {MAX_DEPTH} levels deep") from None
    except ValueError as err:  # JSONDecodeError, and integers of more than 4300 digits
        raise CnnfruitError(f"{what} is not valid JSON: {err}") from None
