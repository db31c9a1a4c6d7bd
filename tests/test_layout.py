"""The layout's promises: inference never imports training code, and the CLI's coding commands go through
the public API rather than the codec classes."""
import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# folder of the repository -> its place inside the `vqcodec` package (pyproject's package-dir mapping)
ROOTS = {"codec": "", "bitstream": "bitstream/", "kernels": "kernels/", "cli": "cli/"}


def package_files():
    """(path inside the vqcodec package, e.g. 'cli/train.py', file path) for every module of the package."""
    for folder, prefix in ROOTS.items():
        for path in (REPO / folder).rglob("*.py"):
            yield prefix + path.relative_to(REPO / folder).as_posix(), path


INFERENCE = ["vqcodec", "vqcodec.api", "vqcodec.registry", "vqcodec.image.codec", "vqcodec.audio.codec",
             "vqcodec.cli.main", "vqcodec.cli.commands", "vqcodec.bitstream", "vqcodec.coding.stages"]


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


def test_cli_coding_commands_use_the_public_api():
    tree = ast.parse((REPO / "cli" / "commands.py").read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert not {m for m in imported if m.startswith(("vqcodec.image", "vqcodec.audio", "vqcodec.bitstream"))}, imported
