"""The OpenMP wait policy that ``import core`` sets before torch loads (see core/__init__.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = ("import os, sys; import {module}; "
         "print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)")


def _probe(module: str, policy: str | None) -> tuple[str, bool]:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    env.pop("OMP_WAIT_POLICY", None)
    if policy is not None:
        env["OMP_WAIT_POLICY"] = policy
    out = subprocess.run([sys.executable, "-c", PROBE.format(module=module)], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True).stdout.split()
    return out[0], out[1] == "True"


def test_importing_core_sets_passive_waiting_before_torch_loads():
    policy, torch_loaded = _probe("core", None)
    assert policy == "PASSIVE"
    assert not torch_loaded  # so libgomp, loaded with torch later, reads it


def test_the_gui_package_sets_it_before_any_of_its_modules_imports_torch():
    policy, torch_loaded = _probe("gui", None)
    assert policy == "PASSIVE" and not torch_loaded


def test_a_policy_the_user_set_is_kept():
    assert _probe("core", "ACTIVE")[0] == "ACTIVE"


def _first_import_roots(path: Path) -> list[str]:
    """Root package of each top-level import of a script, in order."""
    import ast

    roots = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            roots += [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            roots.append(node.module.split(".")[0])
    return roots


def test_benchmarks_time_what_the_app_runs_with():
    """A benchmark that loads torch before ``core`` would time torch's spinning threads, not the
    app's passive ones: every script imports core (or a module that does) first."""
    late = []
    for path in sorted((ROOT / "benchmarks").glob("*.py")):
        roots = _first_import_roots(path)
        if "torch" in roots:
            before = roots[: roots.index("torch")]
            if not {"core", "gui", "shared_models"} & set(before):
                late.append(path.name)
    assert not late, f"these benchmarks import torch before core: {late}"
