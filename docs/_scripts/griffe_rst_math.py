"""A griffe extension: losskit's reST math and roles become Markdown before mkdocstrings renders."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import griffe

sys.path.insert(0, str(Path(__file__).parent))
from rst_to_markdown import convert


class RstMath(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.is_class and obj.path.startswith("losskit.nn."):
            # The Modules' documentation is completed at import (losskit.nn._docs): read it there.
            import importlib
            import inspect

            module, _, name = obj.path.rpartition(".")
            try:
                runtime = getattr(importlib.import_module(module), name)
            except (ImportError, AttributeError):
                runtime = None
            doc = inspect.getdoc(runtime) if runtime is not None else None
            if doc:
                if obj.docstring is None:
                    obj.docstring = griffe.Docstring(doc, parent=obj)
                else:
                    obj.docstring.value = doc
        if obj.docstring is not None:
            obj.docstring.value = convert(obj.docstring.value)
