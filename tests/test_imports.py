"""The direction of imports: the bottom of the package never points up at a feature.

errors, settings, engine, db and streaming are what every feature stands on; if one of them
imported chat or auth, a change in a feature could break the ground under all the others
(and import cycles follow). Read from the source, imports inside functions and
``TYPE_CHECKING`` blocks included.
"""

from __future__ import annotations

import ast
from pathlib import Path

import llm_api

PACKAGE = Path(llm_api.__file__).parent
BOTTOM = ("errors", "settings", "engine", "db", "streaming")
FEATURES = ("chat", "email", "auth", "openai", "health", "observability")


def _modules(name: str) -> list[Path]:
    folder = PACKAGE / name
    return sorted(folder.rglob("*.py")) if folder.is_dir() else [PACKAGE / f"{name}.py"]


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _feature_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "llm_api" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in FEATURES else None


def test_bottom_layers_import_no_feature() -> None:
    offences = [
        f"{path.relative_to(PACKAGE)} imports {module}"
        for name in BOTTOM
        for path in _modules(name)
        for module in sorted(_imports(path))
        if _feature_of(module)
    ]
    assert offences == []


def test_every_bottom_layer_exists() -> None:
    # The list above must not go stale silently (a renamed package would pass vacuously).
    for name in BOTTOM:
        assert _modules(name), name
        assert all(path.exists() for path in _modules(name)), name


def test_the_checker_sees_an_upward_import(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from llm_api.chat.store import SessionStore\n")
    assert _feature_of(next(iter(_imports(probe)))) == "chat"
