"""The README's Python snippet runs as pasted (issue #24, item 8: it opened photo.vq before saving it), in a
temporary folder holding a small photo.png and speech.wav, with the shipped models."""
import os
import re
import subprocess
import sys
from pathlib import Path

import soundfile as sf
from PIL import Image

README = Path(__file__).resolve().parents[1] / "README.md"


def python_snippets() -> list[str]:
    """The ```python blocks of the README."""
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_python_snippet_runs_in_a_fresh_folder(tmp_path, make_image, make_audio):
    (snippet,) = python_snippets()
    Image.fromarray(make_image(48, 64, 3)).save(tmp_path / "photo.png")
    sf.write(tmp_path / "speech.wav", make_audio(0.5, 16000, 1, 0), 16000)
    env = {k: v for k, v in os.environ.items() if k != "VQCODEC_WEIGHTS_DIR"}  # the shipped models
    p = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, env={**env, "OMP_NUM_THREADS": "1"},
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert (tmp_path / "photo.vq").is_file() and (tmp_path / "small.vq").is_file()
