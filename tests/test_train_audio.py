"""The audio VQ-VAE trainer on the shared loop: trains on a folder, resumes bit-exactly, exports release
weights, and starts a new run from a release file or another run's checkpoint."""
import pytest
import torch

from vqcodec.audio.model import load_audio_model
from vqcodec.testing import TINY_AUDIO_MODEL
from vqcodec.training.audio_model import EXPORT_NAME, TrainAudioConfig, train_audio



def _config(tmp_path, folder, out, **kw) -> TrainAudioConfig:
    settings = dict(out=str(tmp_path / out), data=str(folder), steps=4, batch_size=2, crop_seconds=0.2, holdout=1,
                    val_seconds=0.5, val_stages=(1, 3), model=dict(TINY_AUDIO_MODEL), lr=2e-3, warmup_steps=1,
                    log_every=1, val_every=2, threads=1, progress=False, bf16=False)
    settings.update(kw)
    return TrainAudioConfig(**settings)


def _assert_same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for (k, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), k


def test_trains_resumes_exactly_and_exports(tmp_path, speech_folder):
    straight = train_audio(_config(tmp_path, speech_folder, "a"))
    train_audio(_config(tmp_path, speech_folder, "b", stop_at_step=2))
    resumed = train_audio(_config(tmp_path, speech_folder, "b", resume=True))
    _assert_same_state(straight, resumed)
    released, _ = load_audio_model(tmp_path / "a" / EXPORT_NAME)
    assert released.cfg == straight.cfg
    assert (tmp_path / "a" / "log.jsonl").read_text().count("\n") >= 4


@pytest.mark.parametrize("source", ["checkpoint.pt", EXPORT_NAME])
def test_a_new_run_starts_from_a_checkpoint_or_a_release(tmp_path, speech_folder, source):
    first = train_audio(_config(tmp_path, speech_folder, "first"))
    second_cfg = _config(tmp_path, speech_folder, "second", stop_at_step=1, lr=1e-12,
                         init_from=str(tmp_path / "first" / source))
    second = train_audio(second_cfg)
    # one step at a vanishing learning rate: the weights are the source's (float16 for a release file);
    # EMA codebook updates still move the codebooks, so compare the encoder's weights
    for (k, a), b in zip(first.encoder.state_dict().items(), second.encoder.state_dict().values()):
        tol = 1e-8 if source.endswith(".pt") else 1e-3 * float(a.abs().max()) + 1e-6
        assert torch.allclose(a, b, atol=tol, rtol=0), k


def test_init_from_another_config_is_refused(tmp_path, speech_folder):
    train_audio(_config(tmp_path, speech_folder, "first", steps=1))
    other = dict(TINY_AUDIO_MODEL, width=TINY_AUDIO_MODEL["width"] * 2)
    for source in ("checkpoint.pt", EXPORT_NAME):
        with pytest.raises(ValueError, match="matching model settings"):
            train_audio(_config(tmp_path, speech_folder, "x" + source, model=other,
                                init_from=str(tmp_path / "first" / source)))
