"""The model registry: files name their components, the decoder finds them, a missing one is named."""
import json
import shutil

import numpy as np
import pytest
import torch
import safetensors
import safetensors.torch

import vqcodec
import vqcodec.registry
from vqcodec import api
from vqcodec.bitstream import VQFormatError, read_file
from vqcodec.registry import ModelRegistry, _file_hash
from vqcodec.weights.io import WEIGHTS_DIR




def test_shipped_manifest_matches_the_files():
    reg = ModelRegistry(WEIGHTS_DIR)
    defaults = reg.defaults("image")
    assert set(defaults) == {"vqvae", "prior", "refinement", "decoder"}
    assert defaults["vqvae"].model_id == "image-f8-s2-k512-d128-v4"
    assert defaults["decoder"].model_id == "image-f8-s2-k512-d128-v4-decoder-c2"
    for c in reg.components:
        assert _file_hash(c.path) == c.weights_hash, f"{c.path.name}: MANIFEST.json hash is stale"


def test_file_names_each_component(tiny_weights, use_weights, make_image):
    use_weights(tiny_weights)
    data = vqcodec.encode_image(make_image(16, 24), quality=2)
    roles = {c.role for c in read_file(data).components}
    assert roles == {"vqvae", "prior"}
    info = vqcodec.inspect(data)
    assert {r for r, _, _ in info.components} == {"vqvae", "prior"}


def test_retrained_prior_keeps_old_files_decoding(tiny_weights, use_weights, make_image, tmp_path):
    """A release that ships a new prior beside the old one still decodes the old prior's files."""
    folder = tmp_path / "weights"
    shutil.copytree(tiny_weights, folder)

    def manifest(release, components, retired=()):
        (folder / "MANIFEST.json").write_text(json.dumps(
            {"release": release, "components": list(components), "retired": list(retired)}))
        use_weights(folder)

    def component(role, model_id, file, release, default):
        return {"modality": "image", "role": role, "model_id": model_id, "file": file,
                "weights_hash": _file_hash(folder / file).hex(), "release": release, "default": default}

    vqvae = component("vqvae", "tiny-vqvae", "image_vqvae.safetensors", "0.1.0", True)
    manifest("0.1.0", [vqvae, component("prior", "tiny-prior-v1", "image_prior.safetensors", "0.1.0", True)])
    old = vqcodec.encode_image(make_image(16, 24), quality=3)
    old_indices = vqcodec.decode_indices(old)
    # "retrain" the prior: another file (here the same nets under another id, so another hash) becomes the default
    tensors = safetensors.torch.load_file(str(folder / "image_prior.safetensors"))
    with safetensors.safe_open(str(folder / "image_prior.safetensors"), framework="pt") as f:
        meta = dict(f.metadata() or {})
    meta["model_id"] = "tiny-prior-v2"
    safetensors.torch.save_file(tensors, str(folder / "image_prior_new.safetensors"), metadata=meta)
    old_prior = component("prior", "tiny-prior-v1", "image_prior.safetensors", "0.1.0", False)
    new_prior = component("prior", "tiny-prior-v2", "image_prior_new.safetensors", "0.2.0", True)
    manifest("0.2.0", [vqvae, old_prior, new_prior])
    new = vqcodec.encode_image(make_image(16, 24), quality=100)
    assert {c.model_id for c in read_file(new).components} >= {"tiny-prior-v2"}
    assert vqcodec.decode_indices(old).equal(old_indices)  # the old file still decodes, under the old prior
    # once the old prior is removed, the old file's error names the component and the release that shipped it
    retired = {k: old_prior[k] for k in ("modality", "role", "model_id", "weights_hash")} | {"releases": "0.1.0"}
    manifest("0.3.0", [vqvae, new_prior], [retired])
    with pytest.raises(VQFormatError, match=r"tiny-prior-v1.*vqcodec 0\.1\.0"):
        vqcodec.decode(old)
    assert torch.equal(vqcodec.decode_indices(new), vqcodec.registry.default_codec("image").encode_indices(
        np.asarray(make_image(16, 24)), 100))


def test_unknown_modality_is_a_value_error():
    with pytest.raises(ValueError, match="unknown modality"):
        vqcodec.max_quality("video")
