"""Smoke runs of the image-training tools in benchmarks/: throughput (--quick), the learning curve and pilot
comparison over the committed pilot logs, and the speed comparison. They check that the scripts run on a
fresh clone and read what the trainer writes, not the figures."""
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"
PILOTS = BENCH / "results" / "training" / "v4_pilots"


def _run(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCH / script), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=900)


def test_train_throughput_quick(tmp_path):
    p = _run("train_throughput.py", "--quick", cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    lines = [l for l in p.stdout.splitlines() if "steps/s" in l]
    assert [l.split()[0] for l in lines] == ["float32", "bf16"]


def test_learning_curve_reads_v4_logs_and_reports_the_drop(tmp_path):
    p = _run("learning_curve.py", str(PILOTS / "F_continued.jsonl"), "--cores", "1", "--gap", "0.1",
             "--out", str(tmp_path), cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    table = (tmp_path / "learning_curve.md").read_text()
    assert "| 3000 |" in table and "s=16" in table and "q100" in table
    assert "1.191 dB (s=8, step 500 -> 3000)" in table  # the drifted run is caught
    assert (tmp_path / "learning_curve.png").stat().st_size > 1000


def test_pilot_compare_puts_runs_side_by_side(tmp_path):
    p = _run("pilot_compare.py", str(PILOTS / "F_continued.jsonl"), str(PILOTS / "I_active.jsonl"),
             "--out", str(tmp_path / "cmp.md"), cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    rows = [l for l in (tmp_path / "cmp.md").read_text().splitlines() if l.startswith("| 2000 | I_active")]
    assert len(rows) == 1 and "-20.16 %" in rows[0]


def test_compare_speed_medians(tmp_path):
    def run(name, enc):
        folder = tmp_path / name
        folder.mkdir()
        levels = [{"quality": 1, "encode_s_median": enc, "decode_s_median": 1.0}]
        (folder / "codec_speed.json").write_text(json.dumps({"levels": levels}))
        return str(folder)

    p = _run("compare_speed.py", "--old", run("o1", 1.0), run("o2", 3.0), run("o3", 2.0),
             "--new", run("n1", 2.2), run("n2", 2.2), run("n3", 9.0), cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "| q1 encode s | 2.000 | 2.200 | +10.0 % |" in p.stdout
