"""The wheel's package list, found rather than written: every folder of addons/gateway/ with an __init__.py is a
package of qwen_gateway (a provider's under upstream/ among them), so a new package is no line here or in
pyproject.toml. pyproject.toml holds the rest (the metadata, `package-dir`, the data files); tests/repo/test_layers.py
holds the list to the folders."""

from pathlib import Path

from setuptools import find_packages, setup

SOURCE = Path(__file__).resolve().parent / "addons" / "gateway"  # qwen_gateway (pyproject.toml's package-dir)

setup(packages=["qwen_gateway", *(f"qwen_gateway.{name}" for name in find_packages(str(SOURCE)))])
