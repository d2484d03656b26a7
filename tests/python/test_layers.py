"""The package's architecture, enforced: which layer may import which, and what the protocol core may import.

Layers, lowest first (docs/DEVELOPING.md explains each); a module may import its own layer and the layers below:

    base        fedchain (errors, state)
    core        the protocol core: what every party must compute identically
    adapters    chain (web3), content (IPFS)
    aggregation robust rules: tensors in, tensors out
    learning    task kinds, models, data, trainers, evaluation, screening, scoring
    privacy     (beside learning) DP-SGD through Opacus, privacy accounting, the "privacy/1" declaration
    views       read models over chain events and IPFS content (the event index among them)
    web         the live dashboard: a web app over the views
    roles       contributor, validator (round function, publish, loop), owner
    sim         demo, devnet, attackers, plots
    cli         the `fedchain` command
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "python" / "fedchain"

LAYERS: dict[str, int] = {
    "": 0, "core": 1, "chain": 2, "content": 2, "aggregation": 3, "learning": 4, "unlabelled": 4, "privacy": 4, "views": 5,
    "web": 6, "roles": 6, "sim": 7, "faults": 7, "cli": 8,
}
# Third-party stacks the core must never import: it is what a verifier or a dashboard loads without them.
CORE_FORBIDDEN = ("torch", "web3", "httpx", "requests", "ape")
MAX_MODULES_PER_PACKAGE = 10  # "at most about eight modules each" (the core holds the ten ARCHITECTURE.md names)


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py"))


def _layer_of_module(dotted: str) -> str:
    parts = dotted.split(".")
    assert parts[0] == "fedchain", dotted
    if len(parts) == 1 or parts[1] not in LAYERS:
        return ""  # fedchain, fedchain.errors, fedchain.state
    return parts[1]


def _dotted(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) for every import in the file, late imports inside functions included."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            # `from fedchain import x` imports the module fedchain.x when x is one
            if node.module == "fedchain":
                found += [(node.lineno, f"fedchain.{alias.name}") for alias in node.names]
    return found


def _violations() -> list[str]:
    out: list[str] = []
    for path in _modules():
        here = _dotted(path)
        layer = _layer_of_module(here)
        for line, module in _imports(path):
            where = f"{path.relative_to(PACKAGE.parent)}:{line}"
            top = module.split(".")[0]
            if layer == "core" and top in CORE_FORBIDDEN:
                out.append(f"{where}: the protocol core imports {module}")
            if top != "fedchain":
                continue
            target = _layer_of_module(module)
            if LAYERS[target] > LAYERS[layer]:
                out.append(f"{where}: {here} (layer {layer or 'base'}) imports {module} (layer {target}, above it)")
    return out


def test_every_import_goes_down_the_layers() -> None:
    assert _violations() == []


def test_the_layer_rule_catches_an_upward_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "fedchain"
    (fake / "core").mkdir(parents=True)
    (fake / "core" / "bad.py").write_text("import torch\nfrom fedchain.roles.validator import Validator\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    problems = _violations()
    assert len(problems) == 2
    assert "imports torch" in problems[0] and "layer roles" in problems[1]


def test_every_subpackage_is_a_known_layer_of_a_few_modules() -> None:
    for sub in sorted(p for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()):
        assert sub.name in LAYERS, f"{sub.name}/ is not in the layer table: add it here and in docs/DEVELOPING.md"
        modules = [p for p in sub.glob("*.py") if p.name != "__init__.py"]
        assert len(modules) <= MAX_MODULES_PER_PACKAGE, f"{sub.name}/ has {len(modules)} modules: split it"
    flat = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert flat == ["__init__.py", "errors.py", "state.py"]


@pytest.mark.parametrize(
    "statement",
    [
        "from fedchain.core.spec import TaskSpec, mnist_spec; TaskSpec.from_json_bytes(mnist_spec(sealed=False).to_json_bytes())",
        "from fedchain.core.report import RoundReport",
        "from fedchain.core.envelope import decode_update, encode_update, UpdateEnvelope",
        "import fedchain.core.sealing, fedchain.core.merkle, fedchain.core.keys, fedchain.core.policy",
    ],
)
def test_reading_protocol_documents_does_not_import_torch(statement: str) -> None:
    code = f"import sys; {statement}; print('torch' in sys.modules, 'web3' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]
