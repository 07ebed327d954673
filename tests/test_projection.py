"""The shared channel projection (splitwire.projection): fit, project, reconstruct, and the torch modules
that export folds into the head and the tail."""

import numpy as np
import pytest

from splitwire.projection import channel_fisher, components_for, fit_projection


def _correlated(rng, n=40, channels=12, rank=3, hw=(5, 6), relu=True):
    """Features whose channels mix ``rank`` latent maps (plus a little noise), channels first."""
    latent = rng.standard_normal((n, rank, *hw))
    mix = rng.standard_normal((channels, rank))
    x = np.einsum("nrhw,cr->nchw", latent, mix) + 0.01 * rng.standard_normal((n, channels, *hw))
    return np.maximum(x, 0).astype(np.float32) if relu else x.astype(np.float32)


def test_components_for_takes_counts_and_fractions():
    assert components_for(64, 16) == 16 and components_for(64, 100) == 64
    assert components_for(64, 0.25) == 16 and components_for(10, 0.25) == 3 and components_for(3, 0.01) == 1
    assert components_for(64, 1.0) == 64
    for bad in (0, -1, 0.0, 1.5, True, "16"):
        with pytest.raises(ValueError):
            components_for(64, bad)


def test_full_rank_projection_reconstructs_exactly_and_keeps_all_the_energy():
    rng = np.random.default_rng(0)
    x = _correlated(rng, relu=False)
    p = fit_projection(x, 12)
    assert p.components == p.channels == 12 and p.energy == pytest.approx(1.0) and not p.nonnegative
    y = p.project(x)
    assert y.shape == x.shape and y.dtype == np.float32
    np.testing.assert_allclose(p.reconstruct(y), x, atol=1e-4)
    np.testing.assert_allclose(p.basis.T @ p.basis, np.eye(12), atol=1e-5)          # orthonormal


def test_components_are_ordered_by_variance_and_capture_a_low_rank_signal():
    rng = np.random.default_rng(1)
    x = _correlated(rng, relu=False, rank=3)
    p = fit_projection(x, 3)
    assert p.energy > 0.999
    var = p.project(x).var(axis=(0, 2, 3))
    assert np.all(np.diff(var) <= 1e-6)
    np.testing.assert_allclose(p.reconstruct(p.project(x)), x, atol=0.05)


def test_nonnegative_features_reconstruct_nonnegative():
    rng = np.random.default_rng(2)
    x = _correlated(rng, relu=True)
    p = fit_projection(x, 0.25)
    assert p.nonnegative and p.components == 3
    assert p.reconstruct(p.project(x)).min() >= 0


def test_channels_last_lists_and_determinism():
    rng = np.random.default_rng(3)
    x = _correlated(rng, relu=False)
    last = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    a = fit_projection(x, 4)
    b = fit_projection([last[i:i + 1] for i in range(len(last))], 4, axis=3)   # one tensor per sample
    np.testing.assert_allclose(a.basis, b.basis, atol=1e-5)
    np.testing.assert_allclose(a.mean, b.mean, atol=1e-5)
    assert b.project(last).shape == (*last.shape[:3], 4)
    c = fit_projection(x, 4)
    assert np.array_equal(a.basis, c.basis) and np.array_equal(a.mean, c.mean)
    signs = a.basis[np.argmax(np.abs(a.basis), axis=0), np.arange(4)]
    assert np.all(signs > 0)                                    # the sign convention


def test_mismatched_channels_are_refused():
    rng = np.random.default_rng(4)
    p = fit_projection(_correlated(rng), 4)
    with pytest.raises(ValueError, match="12 channels"):
        p.project(np.zeros((1, 5, 2, 2), np.float32))
    with pytest.raises(ValueError, match="disagree"):
        fit_projection([np.zeros((1, 3, 2, 2)), np.zeros((1, 4, 2, 2))], 2)
    with pytest.raises(ValueError, match="at least one"):
        fit_projection([], 2)


@pytest.mark.parametrize("fisher", [None, np.diag(np.linspace(1, 4, 12))], ids=["pca", "fisher"])
def test_torch_modules_match_numpy(fisher):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    x = _correlated(rng, relu=True)
    p = fit_projection(x, 5, fisher=fisher)
    identity = torch.nn.Identity()
    with torch.no_grad():
        y = p.head_module(identity)(torch.from_numpy(x)).numpy()
        back = p.tail_module(identity)(torch.from_numpy(y)).numpy()
    np.testing.assert_allclose(y, p.project(x), atol=1e-4)
    np.testing.assert_allclose(back, p.reconstruct(p.project(x)), atol=1e-4)
    assert back.min() >= 0
    last = np.ascontiguousarray(np.moveaxis(x, 1, -1))                     # channels last (Swin)
    q = fit_projection(last, 5, axis=3, fisher=fisher)
    with torch.no_grad():
        y = q.head_module(identity, channels_first=True)(torch.from_numpy(last)).numpy()
        back = q.tail_module(identity, channels_first=True)(torch.from_numpy(y)).numpy()
    np.testing.assert_allclose(y, np.moveaxis(q.project(last), -1, 1), atol=1e-4)
    np.testing.assert_allclose(back, q.reconstruct(q.project(last)), atol=1e-4)


def _quiet_signal_loud_noise(rng, n=200):
    """Channel 0 is what a classifier reads (small variance); channels 1-3 are loud and irrelevant."""
    x = rng.standard_normal((n, 4, 3, 3))
    x[:, 0] *= 0.3
    x[:, 1:] *= 3.0
    return x.astype(np.float32)


def test_fisher_weighting_keeps_the_component_the_tail_reads_not_the_loudest():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    x = _quiet_signal_loud_noise(rng)
    torch.manual_seed(0)
    tail = torch.nn.Sequential(torch.nn.Conv2d(4, 3, 1, bias=False), torch.nn.Flatten(), torch.nn.LazyLinear(3))
    with torch.no_grad():
        tail[0].weight.zero_()
        tail[0].weight[:, 0] = torch.tensor([[[5.0]], [[-5.0]], [[2.0]]])      # only channel 0 reaches the logits
        tail(torch.from_numpy(x[:1]))
    fisher = channel_fisher(tail, x, batch=64)
    assert fisher.shape == (4, 4) and fisher[0, 0] > 0
    np.testing.assert_allclose(fisher[1:, :], 0, atol=1e-12)                 # the tail ignores channels 1-3
    plain, weighted = fit_projection(x, 1), fit_projection(x, 1, fisher=fisher)
    assert weighted.method == "fisher" and plain.method == "pca"
    assert abs(plain.basis[0, 0]) < 0.1                                         # PCA keeps a loud channel
    direction = weighted.basis[:, 0] / np.linalg.norm(weighted.basis[:, 0])
    assert abs(direction[0]) > 0.99                                             # Fisher keeps channel 0
    lost = [np.abs(p.reconstruct(p.project(x))[:, 0] - x[:, 0]).mean() for p in (plain, weighted)]
    assert lost[1] < 0.02 * lost[0]                          # channel 0 survives the 1-component projection


def test_a_full_rank_fisher_projection_reconstructs_and_inverts_its_basis():
    rng = np.random.default_rng(7)
    x = _correlated(rng, relu=False)
    g = rng.standard_normal((500, 12))
    fisher = g.T @ (g * np.linspace(0.01, 10, 12)) / 500                     # any symmetric PSD matrix
    p = fit_projection(x, 12, fisher=(fisher + fisher.T) / 2)
    np.testing.assert_allclose(p.inverse @ p.basis, np.eye(12), atol=1e-4)
    np.testing.assert_allclose(p.reconstruct(p.project(x)), x, atol=1e-3)
    # The whitening keeps the features' total variance: the codec sees values of the same size.
    assert p.project(x).var(axis=(0, 2, 3)).sum() == pytest.approx(x.var(axis=(0, 2, 3)).sum(), rel=1e-3)
    q = fit_projection(x, 4, fisher=fisher)
    assert q.inverse.shape == (4, 12) and p.describe()["method"] == "fisher"
    np.testing.assert_allclose(q.inverse @ q.basis, np.eye(4), atol=1e-4)


def test_a_fisher_projection_refuses_a_wrong_matrix():
    rng = np.random.default_rng(8)
    x = _correlated(rng, relu=True)
    for bad in (np.eye(5), np.full((12, 12), np.nan)):
        with pytest.raises(ValueError, match="fisher"):
            fit_projection(x, 3, fisher=bad)
    with pytest.raises(ValueError, match="ridge"):
        fit_projection(x, 3, fisher=np.eye(12), ridge=0.0)
