"""cas — a versioned, content-addressed store for machine-learning assets.

The notebook-facing API lives in :mod:`cas.api` and is re-exported here::

    import cas
    repo = cas.init("/content/drive/MyDrive/cas-store", "/content/_assets")
    repo.commit("first version", tag="v1")
    repo.checkout("v1")
"""

from __future__ import annotations

__version__ = "0.1.0"

from cas.api import Repo, clone, init, open
from cas.errors import CasError

__all__ = ["CasError", "Repo", "__version__", "clone", "init", "open"]
