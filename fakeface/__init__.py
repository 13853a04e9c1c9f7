"""fakeface: find photoshopped profile faces among millions of uploads, nightly, on Spark.

Importing fakeface stays light (no keras/tensorflow). So that saved models with fakeface's
custom layers load anywhere (``keras.saving.load_model``, ``mlflow.keras.load_model``) after
``import fakeface``, the layers module is imported as soon as keras itself is: right now if
keras is already loaded, else by a one-shot import hook that fires when ``keras`` finishes
executing.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.abc
import sys
import warnings

__version__ = "0.1.0"

_LAYERS_MODULE = "fakeface.models.layers"


def _register_layers() -> None:
    """Import the custom layers (registering them with Keras); warn instead of failing."""
    try:
        importlib.import_module(_LAYERS_MODULE)
    except Exception as exc:  # never break the caller's `import keras`
        warnings.warn(
            f"fakeface: could not register custom Keras layers ({exc!r}); "
            f"models using them will not load until `import {_LAYERS_MODULE}` works",
            RuntimeWarning,
            stacklevel=2,
        )


class _KerasImportHook(importlib.abc.MetaPathFinder):
    """Meta-path finder that runs _register_layers once the top-level keras module is loaded.

    It finds nothing itself: it asks the other finders for keras' spec and wraps that spec's
    loader.exec_module (on the loader instance, so module.__loader__ stays the real loader).
    """

    fakeface_keras_hook = True  # marker, so a reload does not install a second hook

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "keras":
            return None
        try:
            spec = self._real_spec(fullname, path, target)
            loader = getattr(spec, "loader", None)
            exec_module = getattr(loader, "exec_module", None)
            if exec_module is None:
                return None
            loader.exec_module = self._wrap(loader, exec_module)
            return spec
        except Exception:  # anything odd: step aside and let the normal import run
            return None

    def _real_spec(self, fullname, path, target):
        for finder in list(sys.meta_path):
            if finder is self or getattr(finder, "fakeface_keras_hook", False):
                continue
            find_spec = getattr(finder, "find_spec", None)
            if find_spec is None:
                continue
            spec = find_spec(fullname, path, target)
            if spec is not None:
                return spec
        return None

    def _wrap(self, loader, exec_module):
        def exec_and_register(module):
            try:
                exec_module(module)
            finally:
                # restore the loader's own method (drop the instance attribute)
                with contextlib.suppress(AttributeError):
                    del loader.exec_module
            if getattr(module, "__name__", None) == "keras":
                self.remove()
                _register_layers()

        return exec_and_register

    def remove(self) -> None:
        """Take this hook off sys.meta_path (idempotent)."""
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self)


def _install_keras_hook() -> None:
    if "keras" in sys.modules:
        _register_layers()
    elif not any(getattr(f, "fakeface_keras_hook", False) for f in sys.meta_path):
        sys.meta_path.insert(0, _KerasImportHook())


_install_keras_hook()
