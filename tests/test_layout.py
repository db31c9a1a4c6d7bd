"""The layout's promises: inference never imports training code, the CLI's coding commands go through the
public API rather than the codec classes, every module is loaded under one name only, and the package's
import graph has no cycle and points down (LAYERS)."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# folder of the repository -> its place inside the `vqcodec` package (pyproject's package-dir mapping)
ROOTS = {"codec": "", "bitstream": "bitstream/", "kernels": "kernels/", "cli": "cli/"}


def package_files():
    """(path inside the vqcodec package, e.g. 'cli/train.py', file path) for every module of the package."""
    for folder, prefix in ROOTS.items():
        for path in (REPO / folder).rglob("*.py"):
            yield prefix + path.relative_to(REPO / folder).as_posix(), path


INFERENCE = ["vqcodec", "vqcodec.api", "vqcodec.registry", "vqcodec.image.codec", "vqcodec.audio.codec",
             "vqcodec.cli.main", "vqcodec.cli.commands", "vqcodec.cli.jobs", "vqcodec.cli.batch", "vqcodec.bitstream",
             "vqcodec.coding.stages", "vqcodec.contract", "vqcodec.limits"]


def test_inference_modules_do_not_import_training_code():
    code = ("import importlib, sys\n"
            f"for m in {INFERENCE!r}:\n"
            "    importlib.import_module(m)\n"
            "bad = sorted(m for m in sys.modules if m.startswith('vqcodec.training') or m.startswith('vqcodec.metrics'))\n"
            "print(' '.join(bad))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "", f"inference imports training code: {out.stdout}"


def test_no_module_outside_training_imports_it_statically():
    offenders = []
    for rel, path in package_files():
        if rel.startswith("training/") or rel == "cli/train.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{rel}: {n}" for n in names if n.startswith("vqcodec.training")]
    assert not offenders, offenders


@pytest.mark.parametrize("name", ["commands.py", "jobs.py", "batch.py"])
def test_cli_coding_commands_use_the_public_api(name):
    tree = ast.parse((REPO / "cli" / name).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert not {m for m in imported if m.startswith(("vqcodec.image", "vqcodec.audio", "vqcodec.bitstream",
                                                     "vqcodec.registry"))}, imported


# ----------------------------------------------------------------------------------- one name per module
# folder of the repository -> the one name it is imported under
INSTALLED_AS = {"codec": "vqcodec", "bitstream": "vqcodec.bitstream", "cli": "vqcodec.cli", "kernels": "vqcodec.kernels"}


@pytest.mark.parametrize("folder", list(INSTALLED_AS))
def test_repository_folders_cannot_be_imported_under_a_second_name(folder):
    """From the repository root (on sys.path, as `python -m pytest` puts it), `import bitstream` would load a
    second copy of vqcodec.bitstream (a second VQFormatError class): it fails, saying what to import, while
    the installed name works."""
    name = INSTALLED_AS[folder]
    code = ("import importlib, sys\n"
            f"sys.path.insert(0, {str(REPO)!r})\n"
            f"import {name}\n"
            "try:\n"
            f"    importlib.import_module({folder!r})\n"
            "except ImportError as e:\n"
            "    print('refused:', e)\n"
            "else:\n"
            "    print('imported')\n"
            f"print('copies:', sorted(m for m in sys.modules if m == {folder!r} or m.startswith({folder + '.'!r})))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "refused:" in out.stdout and f"import {name}," in out.stdout, out.stdout
    assert "copies: []" in out.stdout, out.stdout


# ----------------------------------------------------------------------------------- the import graph
LAYERS = [
    {"version", "files"},                          # no vqcodec imports
    {"bitstream", "kernels", "weights"},           # the format; the search kernels; weights files
    {"limits", "contract", "integer", "quantization"},  # size limits, the codec contract, integer nets, RVQ
    {"coding"},                                    # indices + prior -> one stream per stage
    {"image", "audio"},                            # the modalities: models, priors, codecs
    {"registry", "metrics"},                       # installed components -> loaded codecs; quality metrics
    {"api"},                                       # the public API
    {"pillow_plugin", "testing", "training"},      # built on the API or on the modalities
    {""},                                          # the package root (vqcodec/__init__.py: re-exports the API)
    {"cli"},                                       # the `vqcodec` command
]
"""Each unit (a top-level module or folder of the vqcodec package; "" is the package root) may import units
of lower layers and its own modules, never a unit of its own layer or a higher one."""


def _module_name(rel: str) -> str:
    """'image/codec.py' -> 'vqcodec.image.codec'; 'cli/__init__.py' -> 'vqcodec.cli'."""
    parts = rel[:-3].split("/")
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(["vqcodec", *parts])


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def import_graph() -> dict[str, set[str]]:
    """module -> the vqcodec modules it imports (static: every import statement, those inside functions too).
    `from a import b` names the module a.b when there is one, else a; importing a.b does not count as
    importing the package a (its __init__ runs, but that is a's business)."""
    files = {_module_name(rel): path for rel, path in package_files()}
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                named = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(up + ([node.module] if node.module else []))
                named = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            else:
                continue
            for name in named:
                while name and name not in files:  # a name inside a module -> that module
                    name = name.rpartition(".")[0]
                if name.startswith("vqcodec") and name != module:
                    targets.add(name)
        graph[module] = targets
    return graph


def test_import_graph_has_no_cycle():
    graph = import_graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                cycles.append(" -> ".join(path[path.index(t):] + [m, t]) if t in path else f"{m} -> {t}")
            elif t not in state:
                visit(t, path + [m])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])
    assert not cycles, cycles


def test_every_import_points_down():
    layer = {unit: i for i, units in enumerate(LAYERS) for unit in units}
    graph = import_graph()
    unplaced = sorted({_unit(m) for m in graph} - set(layer))
    assert not unplaced, f"place these in LAYERS: {unplaced}"
    upward = [f"{m} -> {t}" for m, targets in sorted(graph.items()) for t in sorted(targets)
              if _unit(m) != _unit(t) and layer[_unit(t)] >= layer[_unit(m)]]
    assert not upward, upward
