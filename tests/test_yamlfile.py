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
e: [0147282552401293909, "0147282552401293909", !!str 12, 0x1F, .inf, 1_000, on, "on", &x anchored, *x]
"yes": 1
g: |
  block text
f: {k: &y [1, "1", one], again: *y}
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


def test_each_walker_path_gives_what_safe_load_gives(tmp_path: Path) -> None:
    """Text scalars are taken from the node directly (issue 28); every other tag is constructed."""
    path = tmp_path / "reports.yaml"
    path.write_text(TEXT, encoding="utf-8")
    for loader_class in yamlfile._LOADERS:
        doc = yamlfile.Document(path=path, data=None)
        assert yamlfile._parse(loader_class, TEXT, doc) == yaml.safe_load(TEXT), loader_class.__name__
        assert not doc.problems
