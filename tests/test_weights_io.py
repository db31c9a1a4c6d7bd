"""The one safetensors writer: atomic, usual file mode, nothing left behind when writing fails."""
import os

import pytest
import torch

from vqcodec.weights.io import load_weights, save_safetensors, save_weights
from vqcodec.files import default_file_mode


def test_save_weights_roundtrip_and_mode(tmp_path):
    path = tmp_path / "m.safetensors"
    shared = torch.arange(6.0)
    save_weights(path, {"a": shared, "b": shared[:3]}, "test-model", {"x": 1})  # shared storage is fine
    tensors, model_id, config = load_weights(path)
    assert torch.equal(tensors["a"], shared) and torch.equal(tensors["b"], shared[:3])
    assert (model_id, config) == ("test-model", {"x": 1})
    assert path.stat().st_mode & 0o777 == default_file_mode()
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


@pytest.mark.parametrize("failure", ["metadata", "after the data is written"])
def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch, failure):
    path = tmp_path / "m.safetensors"
    save_safetensors(path, {"a": torch.zeros(2)}, {"k": "old"})
    before = path.read_bytes()
    if failure == "metadata":
        with pytest.raises(Exception):
            save_safetensors(path, {"a": torch.ones(2)}, {"k": 3})  # metadata values must be str
    else:
        def refuse(*args, **kwargs):
            raise PermissionError("chmod refused")

        monkeypatch.setattr(os, "chmod", refuse)  # fails once the temporary file holds the new tensors
        with pytest.raises(PermissionError):
            save_safetensors(path, {"a": torch.ones(2)}, {"k": "new"})
        monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def test_half_storage_loads_as_float32(tmp_path):
    import torch

    from vqcodec.weights.io import load_weights, save_weights

    t = {"w": torch.randn(4, 3), "n": torch.arange(3)}
    save_weights(tmp_path / "h.safetensors", t, "m", {}, half=True)
    full = tmp_path / "f.safetensors"
    save_weights(full, t, "m", {})
    loaded, model_id, _ = load_weights(tmp_path / "h.safetensors")
    assert loaded["w"].dtype == torch.float32 and torch.equal(loaded["w"], t["w"].half().float())
    assert torch.equal(loaded["n"], t["n"]) and model_id == "m"
    assert (tmp_path / "h.safetensors").stat().st_size < full.stat().st_size
