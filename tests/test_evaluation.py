"""Splice evaluation (interp.evaluation): identity / zero 'SAEs' pin loss recovered to 1 / 0, and
the restarted-forward losses agree with an independent full forward through `hooks.splice`."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from interp import evaluation, hooks, ito, models, sae


class Identity:
    def encode(self, x):
        return x

    def decode(self, f):
        return f


class Zero:
    def encode(self, x):
        return jnp.zeros_like(x)

    def decode(self, f):
        return f


class Noisy:
    """x + a fixed perturbation: a reconstruction that is good but not perfect."""

    def __init__(self, d, scale):
        self.delta = scale * jax.random.normal(jax.random.PRNGKey(0), (d,))

    def encode(self, x):
        return x + self.delta

    def decode(self, f):
        return f


def _noisy_encode(delta, x):
    return x + delta


def _identity_decode(delta, f):
    return f


@pytest.fixture(scope="module")
def tiny():
    return models.load("tiny-llama")


@pytest.fixture(scope="module")
def tokens(tiny):
    rng = np.random.default_rng(0)
    t = rng.integers(0, 256, (8, 24), dtype=np.int32)
    t[:, 0] = tiny.cfg.bos_id
    return t


SITES = ["blocks.1.resid_post", "blocks.2.mlp_out", "embed"]


@pytest.mark.parametrize("site", SITES)
def test_identity_recovers_everything_zero_nothing(tiny, tokens, site):
    r = evaluation.splice_metrics(tiny, site, Identity(), tokens, batch_size=4, progress=False)
    # the clean and spliced runs are different rows of one batch: equal up to float32 rounding
    assert r["loss_recovered"] == pytest.approx(1.0, abs=1e-5)
    assert r["delta_ce"] == pytest.approx(0.0, abs=1e-6)
    assert abs(r["kl"]) < 1e-7
    assert r["fvu"] == 0.0 and r["mse"] == 0.0  # exact: the reconstruction is x itself
    assert r["l0"] == tiny.cfg.d_model  # a count of non-zero activations
    assert r["ce_zero"] != r["ce_clean"]  # the ablation changes the loss (random tiny model:
    # either way), so the ratio is defined
    assert r["n_tokens"] == 8 * 22  # predictions at positions 1..T-2

    z = evaluation.splice_metrics(tiny, site, Zero(), tokens, batch_size=4, progress=False)
    assert z["loss_recovered"] == pytest.approx(0.0, abs=1e-9)
    assert z["ce_spliced"] == pytest.approx(z["ce_zero"], rel=1e-6)  # rows of one batch
    assert z["ce_zero"] == pytest.approx(r["ce_zero"], rel=1e-6)
    assert z["ce_clean"] == pytest.approx(r["ce_clean"], rel=1e-6)
    assert z["l0"] == 0.0  # exact: a count of non-zero codes, all exact zeros
    assert z["kl"] == pytest.approx(z["kl_zero"])
    assert z["fvu"] >= 1.0  # predicting 0 is no better than predicting the mean


def _full_forward_ce(model, tokens, hook=None):
    """Mean CE and KL(clean || hooked) of the predictions at positions 1..T-2, from whole
    forward passes (independent of the cache-and-restart path)."""
    clean = np.asarray(model.forward(tokens).logits, np.float64)
    out = clean if hook is None else np.asarray(model.forward(tokens, hooks=hook).logits,
                                                np.float64)

    def logsm(z):
        z = z - z.max(-1, keepdims=True)
        return z - np.log(np.exp(z).sum(-1, keepdims=True))

    lp, lq = logsm(out[:, 1:-1]), logsm(clean[:, 1:-1])
    ce = -np.take_along_axis(lp, tokens[:, 2:, None], -1)[..., 0]
    kl = (np.exp(lq) * (lq - lp)).sum(-1)
    return ce.mean(), kl.mean()


@pytest.mark.parametrize("site", ["blocks.1.resid_post", "blocks.2.mlp_out"])
def test_matches_full_forward_with_hooks_splice(tiny, tokens, site):
    """CE_clean / CE_zero / CE_spliced equal whole-model runs with the same interventions
    applied by `interp.hooks` at every position but BOS."""
    name, layer = site.split(".")[2], int(site.split(".")[1])
    noisy = Noisy(tiny.cfg.d_model, 0.3)
    r = evaluation.splice_metrics(tiny, site, noisy, tokens, batch_size=4, progress=False)
    body = np.arange(1, tokens.shape[1])
    ce_clean, _ = _full_forward_ce(tiny, tokens)
    ce_zero, kl_zero = _full_forward_ce(
        tiny, tokens, hooks.zero_ablate(name, positions=body, layers=layer))
    ce_spl, kl_spl = _full_forward_ce(
        tiny, tokens, hooks.splice(name, _noisy_encode, _identity_decode, noisy.delta,
                                   positions=body, layers=layer))
    assert r["ce_clean"] == pytest.approx(ce_clean, rel=1e-5)
    assert r["ce_zero"] == pytest.approx(ce_zero, rel=1e-5)
    assert r["ce_spliced"] == pytest.approx(ce_spl, rel=1e-5)
    assert r["kl"] == pytest.approx(kl_spl, rel=1e-3, abs=1e-7)
    assert r["kl_zero"] == pytest.approx(kl_zero, rel=1e-3)
    assert 0.0 < r["kl"] < r["kl_zero"]
    # mse is exactly the squared norm of the fixed perturbation
    assert r["mse"] == pytest.approx(float(jnp.sum(noisy.delta**2)), rel=1e-4)


def test_sae_and_ito_encoders(tiny, tokens):
    """A real (pytree) SAE and ITO codes on its decoder go through the same path; ITO with
    k = d_sae atoms reconstructs better than k = 1."""
    d = tiny.cfg.d_model
    cfg = sae.SAEConfig(d_in=d, d_sae=4 * d, l1_coeff=1e-3)
    model_sae = sae.init_sae(jax.random.PRNGKey(1), cfg)
    r = evaluation.splice_metrics(tiny, "blocks.1.resid_post", model_sae, tokens,
                                  progress=False)
    assert 0 <= r["l0"] <= 4 * d and np.isfinite(r["loss_recovered"])
    one = evaluation.splice_metrics(tiny, "blocks.1.resid_post", ito.encoder(model_sae, k=1),
                                    tokens, progress=False)
    many = evaluation.splice_metrics(tiny, "blocks.1.resid_post", ito.encoder(model_sae, k=16),
                                     tokens, progress=False)
    assert one["l0"] <= 1.0 and many["l0"] <= 16.0
    assert many["fvu"] < one["fvu"]


def test_bad_inputs(tiny, tokens):
    with pytest.raises(KeyError, match="unknown site"):
        evaluation.splice_metrics(tiny, "blocks.1.nonsense", Identity(), tokens, progress=False)
    with pytest.raises(ValueError, match="before the unembedding"):
        evaluation.splice_metrics(tiny, "final_norm", Identity(), tokens, progress=False)
    with pytest.raises(ValueError, match="T>=3"):
        evaluation.splice_metrics(tiny, "embed", Identity(), tokens[:, :2], progress=False)

    class Broken(Identity):
        def decode(self, f):
            return f * jnp.nan

    with pytest.raises(FloatingPointError, match="NaN"):
        evaluation.splice_metrics(tiny, "embed", Broken(), tokens, progress=False)


@pytest.mark.slow
def test_smollm2_identity_and_zero():
    """On the real model and held-out text: identity gives 1 / 0, zero ablation costs nats."""
    from interp.data import packing

    m = models.load("smollm2-135m", progress=False)
    try:
        toks = packing.packed_split("heldout", m.tokenizer, 64, 4, progress=False)
    except FileNotFoundError:
        pytest.skip("corpus not fetched (python -m interp.data.corpus fetch)")
    ident = evaluation.splice_metrics(m, "blocks.6.resid_post", Identity(), toks, progress=False)
    zero = evaluation.splice_metrics(m, "blocks.6.resid_post", Zero(), toks, progress=False)
    assert ident["loss_recovered"] == pytest.approx(1.0, abs=1e-5)  # rows of one batch
    assert ident["delta_ce"] == pytest.approx(0.0, abs=1e-6)
    assert zero["loss_recovered"] == pytest.approx(0.0, abs=1e-9)
    assert 1.5 < ident["ce_clean"] < 7.0  # short mixed documents (tweets, quotes) packed together
    assert zero["ce_zero"] > ident["ce_clean"] + 1.0


@pytest.mark.parametrize("site", ["blocks.1.resid_post", "blocks.2.mlp_out"])
def test_many_equals_one_at_a_time(tiny, tokens, site):
    """Sharing the clean/zero runs and grouping reconstructions changes no number."""
    d = tiny.cfg.d_model
    eds = [Identity(), Zero(), Noisy(d, 0.3), Noisy(d, 1.0),
           sae.init_sae(jax.random.PRNGKey(2), sae.SAEConfig(d_in=d, d_sae=2 * d))]
    many = evaluation.splice_metrics_many(tiny, site, eds, tokens, batch_size=3, group=2,
                                          progress=False)
    for ed, got in zip(eds, many):
        want = evaluation.splice_metrics(tiny, site, ed, tokens, batch_size=3, progress=False)
        assert set(got) == set(want)
        for k in want:
            assert got[k] == pytest.approx(want[k], rel=1e-5, abs=1e-6), k
    # identity and zero: rows of one batch equal to the clean / zero-ablated rows (rounding)
    assert many[0]["delta_ce"] == pytest.approx(0.0, abs=1e-6)
    assert many[1]["loss_recovered"] == pytest.approx(0.0, abs=1e-5)
    assert evaluation.splice_metrics_many(tiny, site, [], tokens) == []
