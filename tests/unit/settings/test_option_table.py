"""The gateway's options, declared (settings/option_table.py): every default accepted, every number and free text
bounded and its bound said, what each accepts; declared to mitmproxy with their types and defaults."""

from __future__ import annotations

from mitmproxy.test import taddons

from qwen_gateway.settings.option_specs import OptionSpec, problem
from qwen_gateway.settings.option_table import DEFAULT_USER_AGENT, SPECS, declare


def test_every_default_is_a_value_its_option_accepts():
    assert [name for name, spec in SPECS.items() if problem(spec, spec.default)] == []


def test_the_refusal_says_the_range_and_the_length():
    assert SPECS["qwen_upstream_timeout"].accepts == "an integer from 0 to 86400"
    assert SPECS["qwen_context_limits"].accepts == \
        "model=tokens entries (tokens from 1 to 1000000000), at most 512 characters each"
    assert SPECS["qwen_user_agent"].accepts == "printable ASCII text, at most 512 characters"
    assert OptionSpec("o", int, 0, "", minimum=0).accepts == "an integer, 0 or more"


def test_every_number_and_free_text_has_an_upper_bound():
    assert [n for n, spec in SPECS.items() if spec.typespec is int and spec.maximum is None] == []
    # text that is not a choice, a URL (checked as one) or a host name (DNS's limits) has a length
    free = [n for n, spec in SPECS.items() if spec.typespec is not int and spec.typespec is not bool
            and not spec.choices and spec.kind not in ("url", "postgresql_url", "host")]
    assert [n for n in free if SPECS[n].max_length is None] == []
    assert all(f"{SPECS[n].maximum}" in SPECS[n].help for n in SPECS if SPECS[n].maximum is not None)  # said, why too


class Loader:
    """mitmproxy's loader as `load` gets it: the options declared, kept."""

    def __init__(self) -> None:
        self.options: dict[str, tuple] = {}

    def add_option(self, name, typespec, default, help, choices=None) -> None:  # noqa: A002
        self.options[name] = (typespec, default, choices)


def test_every_option_is_declared_to_mitmproxy_with_its_type_default_and_choices():
    loader = Loader()
    declare(loader)
    assert loader.options == {n: (s.typespec, s.default, s.choices) for n, s in SPECS.items()}
    assert all(name.startswith("qwen_") for name in loader.options)


def test_mitmproxy_takes_the_declarations_and_their_defaults():
    class Addon:
        def load(self, loader) -> None:
            declare(loader)

    with taddons.context(Addon()) as tctx:
        assert tctx.options.qwen_user_agent == ""  # empty: $QWEN_USER_AGENT or the built-in one, said in its help
        assert DEFAULT_USER_AGENT in SPECS["qwen_user_agent"].help
        assert tctx.options.qwen_intercept_hosts == ["api.openai.com", "api.anthropic.com"]
        tctx.options.update(qwen_default_model="qwen3-coder-plus")
        assert tctx.options.qwen_default_model == "qwen3-coder-plus"


def test_the_stores_keep_what_the_option_says_by_default():
    """qwen_stored_per_key's default is the stores' own (settings import no store: tests/repo/test_layers.py)."""
    from qwen_gateway.settings.config import Config
    from qwen_gateway.stores.responses_schema import PER_KEY

    assert SPECS["qwen_stored_per_key"].default == Config().stored_per_key == PER_KEY
