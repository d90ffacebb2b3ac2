"""Hold a module's import in a subprocess until the test opens a gate: "X answers while LiteLLM is still loading"
shown by cause (LiteLLM cannot have loaded: its import waits on the gate) instead of by a stopwatch a loaded
machine would beat.

`ImportGate(folder, "litellm").env()` gives the PYTHONPATH for the subprocess: a `sitecustomize` in `folder` that
makes the first `import litellm` wait until `open()` (at most `bound` seconds, then it goes on: a forgotten gate
only slows a test). Only that import waits; the rest of the process runs, imports and answers meanwhile.
"""

from __future__ import annotations

import os
from pathlib import Path

_SITECUSTOMIZE = '''\
import importlib.machinery, os, sys, time

class _Gate:
    """Finds {module!r} where Python would, and makes its loading wait for the gate. It waits in exec_module, not
    in find_spec: Python calls finders under its global import lock, which would stop every thread's imports."""
    done = False

    def find_spec(self, name, path=None, target=None):
        if name != {module!r} or self.done:
            return None
        self.done = True
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _Waiting(spec.loader)
        return spec

class _Waiting:
    def __init__(self, loader):
        self.loader = loader

    def __getattr__(self, name):  # resources, source, everything else: the real loader's
        return getattr(self.loader, name)

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        deadline = time.monotonic() + {bound!r}
        while not os.path.exists({gate!r}) and time.monotonic() < deadline:
            time.sleep(0.02)
        module.__loader__ = module.__spec__.loader = self.loader
        self.loader.exec_module(module)

sys.meta_path.insert(0, _Gate())
'''


class ImportGate:
    def __init__(self, folder: Path, module: str, bound: float = 120) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.gate = folder / "open"
        (folder / "sitecustomize.py").write_text(
            _SITECUSTOMIZE.format(module=module, bound=bound, gate=str(self.gate)), encoding="utf-8")

    def env(self) -> dict[str, str]:
        """PYTHONPATH for the subprocess: the gate's folder first, then what this process was given."""
        inherited = os.environ.get("PYTHONPATH")
        return {"PYTHONPATH": os.pathsep.join([str(self.folder), *([inherited] if inherited else [])])}

    def open(self) -> None:
        self.gate.touch()
