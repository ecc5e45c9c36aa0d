"""Every module imports on its own, in a fresh state, whatever was imported before it.

A circular import only shows when a cycle's modules are entered in one particular order, and a test
session imports them in whatever order its tests happen to. Here each module of ``jepa`` and
``data_pipelines`` is imported first, in one subprocess with the project's modules dropped from
``sys.modules`` before each (third-party modules stay loaded, so the check is quick); the public
lazy attributes of ``jepa`` (``jepa.read_clips``, ``jepa.load_encoder``, ...) are resolved the same way.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import jepa

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import importlib, json, sys, traceback
names, attrs = json.loads(sys.argv[1]), json.loads(sys.argv[2])

def fresh():
    for m in [m for m in sys.modules if m.split(".")[0] in ("jepa", "data_pipelines")]:
        del sys.modules[m]

failures = {}
for name in names:
    fresh()
    try:
        importlib.import_module(name)
    except Exception:
        failures[name] = traceback.format_exc(limit=-3)
for attr in attrs:
    fresh()
    try:
        getattr(importlib.import_module("jepa"), attr)
    except Exception:
        failures["jepa." + attr] = traceback.format_exc(limit=-3)
print(json.dumps(failures))
"""


def project_modules() -> list[str]:
    names = []
    for package in ("jepa", "data_pipelines"):
        names.append(package)
        for info in pkgutil.walk_packages([str(ROOT / package)], prefix=f"{package}."):
            if not info.name.endswith(".__main__"):  # runs the CLI when imported
                names.append(info.name)
    return names


def test_every_module_and_public_attribute_imports_first() -> None:
    names = project_modules()
    assert "jepa.clips" in names and "jepa.probe.features" in names and len(names) > 30
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(names), json.dumps(jepa.__all__)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    failures = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not failures, "\n".join(f"{name}:\n{tb}" for name, tb in failures.items())
