"""libdcron: the library behind dcron, a lightweight distributed cron."""

from .errors import DcronError

__all__ = ["DcronError", "__version__"]
__version__ = "0.1.0"
