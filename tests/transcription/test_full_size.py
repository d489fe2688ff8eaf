"""The benchmark model has parakeet-tdt-0.6b-v2's size, so GPU figures measured with it are real costs."""

from __future__ import annotations

from pathlib import Path

from tests.fixtures.nemo_tdt import PARAKEET_TDT_0_6B, tdt_config, train_tokenizer

PUBLISHED_PARAMETERS = 600_000_000  # "0.6b": NVIDIA's model card gives 600 million parameters


def test_full_size_tdt_is_within_five_percent_of_the_published_parameter_count(tmp_path: Path) -> None:
    from nemo.collections.asr.models import EncDecRNNTBPEModel
    from omegaconf import OmegaConf

    tokenizer = train_tokenizer(tmp_path / "tokenizer", PARAKEET_TDT_0_6B.vocab_size)
    model = EncDecRNNTBPEModel(cfg=OmegaConf.create(tdt_config(tokenizer, PARAKEET_TDT_0_6B)))
    encoder = sum(p.numel() for p in model.encoder.parameters())
    total = sum(p.numel() for p in model.parameters())
    assert abs(total - PUBLISHED_PARAMETERS) / PUBLISHED_PARAMETERS < 0.05, total
    assert encoder / total > 0.95  # the FastConformer encoder is nearly all of it
    assert model.cfg.decoding.model_type == "tdt" and list(model.cfg.decoding.durations) == [0, 1, 2, 3, 4]
