"""The public API is ``airflow_provider_qwenocr.__all__``, exactly the README's "Public API" list (in the style
of httpx's tests/test_exported_members.py), and the README, ``dags/`` and ``bench/`` import nothing else.

``bench/`` may import the internal module it measures, by that module's own path (its private helpers
included, when a stage is what is measured): the imported name, or the attribute read off an imported
module, must be bound by that module itself — not imported there from another module of the provider,
not an alias (``_prepared = prepared_steps``). Imports are read with ``ast`` (also those inside code
strings that bench runs in a subprocess). Assigning to a module attribute (a monkeypatch) is not a read.
"""

from __future__ import annotations

import ast
import importlib
import pathlib
import re
import subprocess
import sys

import pytest

import airflow_provider_qwenocr as package

REPO = pathlib.Path(__file__).resolve().parents[2]
PACKAGE = "airflow_provider_qwenocr"


def _readme_section(title: str) -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", text, re.DOTALL | re.MULTILINE)
    assert match, f'README.md has no "## {title}" section'
    return match.group(1)


def documented_names() -> list[str]:
    return re.findall(r"^- `([A-Za-z_][A-Za-z0-9_]*)`", _readme_section("Public API"), re.MULTILINE)


def test_all_is_exactly_the_documented_list():
    documented = documented_names()
    assert len(documented) == len(set(documented)), "a name is listed twice in the README"
    assert len(package.__all__) == len(set(package.__all__)), "a name is in __all__ twice"
    assert sorted(package.__all__) == sorted(documented)


def test_every_public_name_resolves_to_its_one_home():
    for name in package.__all__:
        value = getattr(package, name)
        home = package._LAZY[name]
        module = importlib.import_module(home)
        assert getattr(module, name) is value, name
        if hasattr(value, "__module__") and not isinstance(value, (str, list, tuple)):
            assert value.__module__ == home, f"{name} is re-exported by {home}, defined in {value.__module__}"
        assert name in _defined_names(home), f"{name} is an alias in {home}, not defined there"
    assert set(package.__all__) <= set(dir(package))
    with pytest.raises(AttributeError):
        package.__getattr__("QwenOcrDeprecatedThing")


def test_importing_the_package_imports_nothing_else():
    """Airflow imports every provider package at discovery: the package itself must stay empty."""
    code = ("import sys, airflow_provider_qwenocr as p; "
            "print(sorted(m for m in sys.modules if m.startswith(('airflow_provider_qwenocr.', 'airflow.')))); "
            "print(p.__version__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    loaded, version = out.stdout.splitlines()
    assert loaded == "[]" and version == "1.0.0"


# -- what the README, the example DAGs and the benchmarks import ------------------------------------------

def _python_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", markdown, re.DOTALL | re.MULTILINE)


def _trees(path: pathlib.Path) -> list[ast.AST]:
    """The file's tree, plus the trees of string constants that are themselves code importing the package."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    trees = [tree]
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and PACKAGE in node.value:
            try:
                trees.append(ast.parse(node.value))
            except SyntaxError:
                pass  # a message or docstring, not code
    return trees


def _imports(tree: ast.AST) -> list[tuple[str, str | None, str | None]]:
    """(module, imported name or None, local alias) for every import of the package."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == PACKAGE:
            found += [(node.module, a.name, a.asname or a.name) for a in node.names]
        elif isinstance(node, ast.Import):
            found += [(a.name, None, a.asname) for a in a_names(node) if a.name.split(".")[0] == PACKAGE]
    return found


def a_names(node: ast.Import) -> list[ast.alias]:
    return list(node.names)


def _defined_names(module: str) -> set[str]:
    """Names a module binds itself: defs, classes, assignments that are not bare aliases, and imports of
    *other* libraries — not names imported from the provider (a re-export) and not ``a = b`` aliases."""
    spec = importlib.util.find_spec(module)
    names: set[str] = set()
    if spec.submodule_search_locations:  # a package: its submodules count as defined
        folder = pathlib.Path(spec.origin).parent
        names |= {p.stem for p in folder.glob("*.py")} | {p.name for p in folder.iterdir() if (p / "__init__.py").exists()}
    tree = ast.parse(pathlib.Path(spec.origin).read_text(encoding="utf-8"))
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)) and not isinstance(node.value, (ast.Name, ast.Attribute)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names |= {t.id for t in ast.walk(target) if isinstance(t, ast.Name)}
        elif isinstance(node, ast.Import):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names if not a.name.startswith(PACKAGE)}
        elif isinstance(node, ast.ImportFrom) and not node.level and not (node.module or "").startswith(PACKAGE):
            names |= {a.asname or a.name for a in node.names}
        elif isinstance(node, (ast.If, ast.Try)):  # optional imports: try/except ImportError, TYPE_CHECKING
            todo += node.body + node.orelse + getattr(node, "finalbody", [])
            todo += [n for h in getattr(node, "handlers", []) for n in h.body]
    return names


def _public_only(where: str, tree: ast.AST) -> list[str]:
    bad = []
    for module, name, _ in _imports(tree):
        if module != PACKAGE or (name is not None and name not in package.__all__):
            bad.append(f"{where}: {module}" + (f" import {name}" if name else ""))
    return bad


def test_readme_code_imports_only_public_names():
    blocks = _python_blocks((REPO / "README.md").read_text(encoding="utf-8"))
    blocks += _python_blocks((REPO / "dags" / "README.md").read_text(encoding="utf-8"))
    assert blocks, "no python blocks found"
    bad = [b for i, block in enumerate(blocks) for b in _public_only(f"README block {i}", ast.parse(block))]
    assert bad == []


def test_example_dags_import_only_public_names():
    files = sorted((REPO / "dags").glob("*.py"))
    assert files
    bad = [b for f in files for tree in _trees(f) for b in _public_only(f"dags/{f.name}", tree)]
    assert bad == []


def test_bench_imports_public_names_or_the_measured_module_by_its_own_path():
    bad = []
    files = sorted((REPO / "bench").glob("*.py"))
    assert files
    for f in files:
        for tree in _trees(f):
            modules: dict[str, str] = {}  # local name → internal module imported as a whole
            for module, name, alias in _imports(tree):
                where = f"bench/{f.name}: from {module} import {name}"
                if module == PACKAGE and name in package.__all__:
                    continue
                if name is None:  # import airflow_provider_qwenocr.x.y [as z]
                    modules[alias or module] = module
                    continue
                if importlib.util.find_spec(f"{module}.{name}") if _is_package(module) else False:
                    modules[alias] = f"{module}.{name}"  # from package import submodule
                elif name not in _defined_names(module):
                    bad.append(where + " (re-exported or aliased there: import it from its own module)")
            for node in ast.walk(tree):  # attributes read off an imported internal module
                if (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load)
                        and isinstance(node.value, ast.Name) and node.value.id in modules):
                    module = modules[node.value.id]
                    if node.attr not in _defined_names(module):
                        bad.append(f"bench/{f.name}: {module}.{node.attr} (re-exported or aliased there)")
    assert bad == []


def _is_package(module: str) -> bool:
    spec = importlib.util.find_spec(module)
    return bool(spec and spec.submodule_search_locations)


def test_the_checker_catches_an_alias_and_a_private_or_internal_import(tmp_path):
    """The rules above fail on what they are meant to catch (bench's old ``hooks.batch._prepared``)."""
    assert _public_only("x", ast.parse("from airflow_provider_qwenocr.lineage import ocr_asset"))
    assert _public_only("x", ast.parse("from airflow_provider_qwenocr import QwenOcrBatchOperator, _LAZY"))
    assert not _public_only("x", ast.parse("from airflow_provider_qwenocr import QwenOcrOperator, ocr_asset"))
    assert "prepared_steps" in _defined_names("airflow_provider_qwenocr.runs.batch")
    assert "compact_batch" not in _defined_names("airflow_provider_qwenocr.hooks.batch")  # re-exported there
    assert "smart_resize" not in _defined_names("airflow_provider_qwenocr.ocr.images")  # imported from .grid
    assert "simplejpeg" in _defined_names("airflow_provider_qwenocr.ocr.jpeg_fast")  # another library's module
    old_bench = tmp_path / "old.py"
    old_bench.write_text("from airflow_provider_qwenocr.hooks import batch as hb\nhb._prepared(1, 2, 3, 4)\n")
    (tree,) = _trees(old_bench)
    assert _imports(tree) == [("airflow_provider_qwenocr.hooks", "batch", "hb")]
    assert "_prepared" not in _defined_names("airflow_provider_qwenocr.hooks.batch")
