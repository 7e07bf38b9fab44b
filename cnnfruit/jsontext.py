"""JSON from files cnnfruit did not necessarily write: nesting bounded before parsing, every error ours.

Python's parser recurses once per level, so `[[[[...` 100,000 deep raised RecursionError (a
traceback) from a checkpoint's text fields; shallower but still deep values could overflow the
stack later, wherever something walks them. cnnfruit's own JSON is at most 4 levels deep.
"""
import json
import re

import numpy as np

from cnnfruit.errors import CnnfruitError

MAX_DEPTH = 20
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)


def depth(text, chunk=1 << 20):
    """How deeply the arrays and objects of JSON text nest (strings skipped), in linear time and a
    few megabytes of memory whatever the text's size."""
    data = _STRINGS.sub("", text).encode("utf-8", "surrogatepass")
    deepest = level = 0
    for start in range(0, len(data), chunk):
        brackets = np.frombuffer(data, dtype=np.uint8, count=min(chunk, len(data) - start), offset=start)
        steps = ((brackets == ord("[")) | (brackets == ord("{"))).astype(np.int32)
        steps -= (brackets == ord("]")) | (brackets == ord("}"))
        levels = np.cumsum(steps, dtype=np.int64) + level
        if len(levels):
            deepest, level = max(deepest, int(levels.max())), int(levels[-1])
    return deepest


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
