"""Float audio prior: causality of the stage-1 WaveNet, independent segments, shapes, trainability."""
import torch

from vqcodec.audio.prior import AudioPrior, AudioPriorConfig, segment_bounds

CFG = AudioPriorConfig(num_stages=3, codebook_size=16, ar_channels=8, ar_skip_channels=8, ar_dilation_levels=3,
                       ar_cycles=1, cond_channels=8, cond_blocks=2, segment_frames=20)


def _prior() -> AudioPrior:
    torch.manual_seed(0)
    return AudioPrior(CFG).eval()


def test_stage1_sees_only_the_past_of_its_segment():
    prior = _prior()
    x = torch.randint(0, 16, (1, 3, 47))
    base = prior(x)[:, 0]
    for t in (0, 5, 19, 20, 33, 46):
        y = x.clone()
        y[0, 0, t] = (y[0, 0, t] + 1) % 16
        changed = (prior(y)[:, 0] - base).abs().amax(dim=1)[0] > 0
        seg_end = (t // 20 + 1) * 20
        assert not changed[: t + 1].any(), f"frame <= {t} depends on frame {t}"
        assert not changed[seg_end:].any(), f"a later segment depends on frame {t}"
        if t + 1 < min(seg_end, 47):
            assert changed[t + 1], "the next frame must see frame t"


def test_later_stages_see_only_earlier_stages():
    prior = _prior()
    x = torch.randint(0, 16, (2, 3, 30))
    base = prior(x)
    y = x.clone()
    y[:, 2] = (y[:, 2] + 3) % 16  # the last stage's own indices never feed a prediction
    assert torch.equal(prior(y), base)
    y = x.clone()
    y[:, 1, 10] = (y[:, 1, 10] + 1) % 16
    diff = (prior(y) - base).abs().amax(dim=(0, 2))  # (S, T)
    assert diff[0].sum() == 0 and diff[1].sum() == 0 and diff[2].sum() > 0
    assert diff[2, 20:].sum() == 0  # segments are independent for every stage


def test_shapes_loss_and_segments():
    prior = _prior()
    x = torch.randint(0, 16, (2, 3, 41))
    assert prior(x).shape == (2, 3, 16, 41)
    assert prior(x[:, :1]).shape == (2, 1, 16, 41)
    assert prior.loss(x).shape == (3,)
    assert segment_bounds(41, 20) == [(0, 20), (20, 20), (40, 1)]
    assert CFG.receptive_field == 1 + 1 + 2 + 4


def test_learns_a_repeating_pattern():
    torch.manual_seed(1)
    prior = AudioPrior(CFG)
    pattern = torch.tensor([1, 5, 9, 5] * 10)[None, None].repeat(4, 3, 1)
    opt = torch.optim.Adam(prior.parameters(), lr=1e-2)
    first = prior.loss(pattern)[0].item()
    for _ in range(60):
        opt.zero_grad()
        prior.loss(pattern).sum().backward()
        opt.step()
    assert prior.loss(pattern)[0].item() < 0.25 * first
