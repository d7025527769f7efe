"""``UsageError``: a bad argument the caller can fix (a number out of range, an unknown name).

The command line prints such an error, and the library's other user errors (``DataError``,
``ConfigError``, ``CheckpointError``, ``ImageError``, ...), as one line; any other exception,
a plain ``ValueError`` included, is a bug and keeps its traceback. It subclasses ``ValueError``
so that code catching ``ValueError`` still catches it.
"""


class UsageError(ValueError):
    """A bad argument; the message names the argument, the value and what would be accepted."""
