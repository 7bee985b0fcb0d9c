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


# Transitively too: a bottom module importing a neutral one (responses, limits, logs) that
# imports a feature reaches that feature as surely as a direct import. Relative imports count.
TRANSITIVE_FEATURES = (*FEATURES, "people")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _llm_api_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = (
        _module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else _module_name(path)
    )
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return {name for name in found if name == "llm_api" or name.startswith("llm_api.")}


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        # "from llm_api.x import y" names y, which may be a module or an attribute of x.
        graph[name] = {imported for imported in _llm_api_imports(path) if imported in modules}
    return graph


def _is_under(module: str, tops: tuple[str, ...]) -> bool:
    return any(module == f"llm_api.{top}" or module.startswith(f"llm_api.{top}.") for top in tops)


def test_bottom_layers_reach_no_feature_package() -> None:
    graph = _graph()
    offences: list[str] = []
    for start in sorted(name for name in graph if _is_under(name, BOTTOM)):
        seen: dict[str, str] = {start: start}
        stack = [start]
        while stack:
            current = stack.pop()
            for imported in sorted(graph[current]):
                if imported in seen:
                    continue
                seen[imported] = current
                if _is_under(imported, TRANSITIVE_FEATURES):
                    chain = [imported]
                    while chain[-1] != start:
                        chain.append(seen[chain[-1]])
                    offences.append(" <- ".join(chain))
                    continue
                stack.append(imported)
    assert offences == [], "bottom layers import feature packages:\n" + "\n".join(offences)


def test_the_transitive_walk_sees_imports() -> None:
    # Guard against a walker that silently finds nothing (the test above would then pass).
    graph = _graph()
    assert "llm_api.errors" in graph["llm_api.engine.client"]
    assert "llm_api.settings" in graph["llm_api.engine.launch"]
    assert any(_is_under(name, TRANSITIVE_FEATURES) for name in graph["llm_api.app"])
