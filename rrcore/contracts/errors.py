"""The errors rr reports as one line, without a traceback: each message names the file, key
or plugin at fault and what would be right. Raised in every layer (plugins raise
:class:`ConfigError` and :class:`DataSourceError` too), so they are defined below all of them."""


class ConfigError(ValueError):
    """An experiment that cannot be used as asked: its file or values, or how they meet the
    data, the device, the run folder or a checkpoint. The message says where and why; the
    ``rr`` commands print it as one line and exit 2."""


class TrainingError(RuntimeError):
    """Training cannot go on (non-finite loss, incompatible checkpoint, a failing plugin...)."""


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, incomplete or unreadable; names the file."""


class DataSourceError(ValueError):
    """A data set that cannot be built as configured: a missing or malformed input file, or
    settings the builder cannot satisfy. Data plugins raise it (or a subclass) with a message
    naming the file or key; ``rr data build`` prints it as one line and exits 2."""
