"""interp.sae.config: SAEConfig validation names the field; cross-field checks and round trip."""

import pytest

from interp import sae
from interp.sae import training
from sae_helpers import small


@pytest.mark.parametrize("field,value", [
    ("dead_strategy", "ghosts"), ("architecture", "jumprelu"), ("l1_coeff", -1.0),
    ("d_sae", 0), ("decoder_norm", "le1"), ("adam_beta1", 1.0), ("lr", 0.0),
])
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=f"SAEConfig.{field}"):
        small(**{field: value})


def test_config_cross_field_checks_and_round_trip():
    with pytest.raises(ValueError, match="dead_strategy"):
        small(dead_strategy="auxk")  # AuxK is for top-k SAEs
    with pytest.raises(ValueError, match="SAEConfig.k"):
        small(architecture="topk", k=65)
    with pytest.raises(ValueError, match="unknown field"):
        sae.SAEConfig.from_dict({"d_in": 4, "d_sae": 8, "l1": 0.1})
    cfg = small(dead_strategy="resample", resample_at=[0.5], steps=100)
    assert sae.SAEConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.resample_steps() == (50,)
    with pytest.raises(ValueError, match="cannot be swept"):
        training.sweep_configs(cfg, {"architecture": ["relu", "gated"]})
