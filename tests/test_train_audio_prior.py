"""The audio prior trainer on the shared loop: indexes a folder with the frozen audio model, trains, resumes
exactly, and exports an integer prior that codes that model's indices."""
import soundfile as sf
import torch

from vqcodec.audio.prior_integer import load_integer_audio_prior
from vqcodec.coding.stages import decode_stages, encode_stages
from vqcodec.training.audio_prior import AudioPriorTrainConfig, export_integer, run_audio_prior

PRIOR = dict(num_stages=3, codebook_size=32, ar_channels=8, ar_skip_channels=8, ar_dilation_levels=2, ar_cycles=1,
             cond_channels=8, cond_blocks=1, segment_frames=40)


def _config(tmp_path, folder, weights, out, **kw):
    return AudioPriorTrainConfig(out=str(tmp_path / out), data=str(folder), model=str(weights / "audio_vqvae.safetensors"),
                                 steps=6, batch_size=4, holdout=1, prior=PRIOR, lr=3e-3, warmup_steps=1, log_every=1,
                                 val_every=3, threads=1, progress=False, **kw)


def test_trains_resumes_exactly_and_exports(tmp_path, tiny_audio_weights, make_audio):
    folder = tmp_path / "speech"
    folder.mkdir()
    for i in range(3):
        sf.write(folder / f"u{i}.wav", make_audio(0.9 + 0.2 * i, 16000, 1, seed=i), 16000)
    straight = run_audio_prior(_config(tmp_path, folder, tiny_audio_weights, "a"))
    assert straight.finished
    run_audio_prior(_config(tmp_path, folder, tiny_audio_weights, "b", stop_at_step=3))
    resumed = run_audio_prior(_config(tmp_path, folder, tiny_audio_weights, "b", resume=True))
    for (k, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
    prior = export_integer(tmp_path / "a")
    assert load_integer_audio_prior(tmp_path / "a" / "audio_prior.safetensors").state_dict().keys() == prior.state_dict().keys()
    seqs = torch.load(tmp_path / "a" / "index_sequences.pt", weights_only=True)["sequences"]
    x = seqs[0].long()
    assert x.shape[0] == 3
    assert torch.equal(decode_stages(prior, encode_stages(prior, x), (x.shape[1],)), x)
