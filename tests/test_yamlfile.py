"""The config file's YAML loader: the memoised tag resolution gives the plain loader's values."""

from __future__ import annotations

from pathlib import Path

import yaml

from dispatcher.config import yamlfile

TEXT = """\
a: 123
b: "123"
c: 123
d: [yes, 'yes', yes, null, "null", ~, 1.5, '1.5', 1.5, 2026-11-30, '2026-11-30']
"""


def test_the_same_scalar_plain_and_quoted_keeps_its_own_type(tmp_path: Path) -> None:
    path = tmp_path / "reports.yaml"
    path.write_text(TEXT, encoding="utf-8")
    doc = yamlfile.load(path)
    assert not doc.problems
    assert doc.data == yaml.safe_load(TEXT)
    assert doc.data["a"] == 123 and doc.data["b"] == "123" and doc.data["c"] == 123
    assert doc.data["d"][:3] == [True, "yes", True]


def test_every_loader_resolves_alike(tmp_path: Path) -> None:
    for loader_class in yamlfile._LOADERS:
        loader = loader_class(TEXT)
        try:
            assert loader.get_single_data() == yaml.safe_load(TEXT), loader_class.__name__
        finally:
            loader.dispose()
