"""hybridrec: keep LLM-powered recommenders fresh at the lowest cost.

Plugin authors import one name: ``from hybridrec import hookimpl``.
"""

from hybridrec.hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["__version__", "hookimpl"]
