"""What the model map knows of each model (model_map.py): its output cap found once per model."""

from __future__ import annotations

from qwen_gateway import model_map


def test_a_models_output_cap_is_looked_up_once(monkeypatch):
    """The cap is the longest matching prefix of a 20-entry table: scanned once per model, not per request."""
    scans = []

    class Caps(dict):
        def __iter__(self):
            scans.append(1)
            return super().__iter__()

    monkeypatch.setattr(model_map, "OUTPUT_CAPS", Caps(model_map.OUTPUT_CAPS))
    for _ in range(3):
        assert model_map.output_cap("qwen-max-2031-once") == 8192  # qwen-max's, a dated snapshot of it
        assert model_map.output_cap("unknown-model-once") == model_map.DEFAULT_OUTPUT_CAP
    assert len(scans) == 2
