"""The package layout of docs/code-organisation.md holds: each layer imports only the ones below it.

Every ``import`` statement of ``vca_ref/`` and ``benchmarks/`` is read with ``ast`` (also those
inside functions), resolved to the layer it names, and compared with the layer order below, the
one the page draws. torch is imported only by ``vca_ref/pytorch`` and ``benchmarks``; CuPy only by
``vca_ref/backend.py`` and the kernel compiler in ``vca_ref/fast/kernels``.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "code-organisation.md"

# Layer order, bottom (0) to top. A module may import its own layer and layers of lower rank.
RANKS = {
    "backend": 0,          # NumPy / CuPy selection
    "fast": 1,             # the override switch: @overridable, set_enabled (fast/__init__.py, switch.py)
    "ops": 2, "train": 2, "io": 2,                      # reference op pairs, optimisers, file I/O
    "nn": 3, "diffusion": 3, "fast.twins": 3,           # modules, samplers, the registered twins
    "models": 4, "gradcheck": 4,
    "vca_ref": 5,          # the package face (vca_ref/__init__.py): the top of the core
    "experiments": 6,      # experiment drivers
    "pytorch": 7,          # the PyTorch subpackage (reads the run folders of the drivers)
    "cli_errors": 8,       # the one-line error messages of the command
    "cli_args": 8,         # the options built from the run configs, argparse types
    "cli": 9,
    "__main__": 10,
    "benchmarks": 11,      # outside the package
}
# The one import that runs upwards: the switch loads the registry of twins on its first
# dispatch, inside a function, so that importing the reference never imports its twins.
LAZY_UPWARD = {("vca_ref/fast/__init__.py", "fast.twins")}

TORCH_ALLOWED = ("vca_ref/pytorch/", "benchmarks/")
CUPY_ALLOWED = ("vca_ref/backend.py", "vca_ref/fast/kernels/")


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> str | None:
    """The layer of a dotted module name of the project, None for anything else."""
    parts = module.split(".")
    if parts[0] == "benchmarks":
        return "benchmarks"
    if parts[0] != "vca_ref":
        return None
    if len(parts) == 1:
        return "vca_ref"
    if parts[1] == "fast":                 # the switch (the package face and switch.py)
        return "fast" if parts[2:] in ([], ["switch"]) else "fast.twins"
    return parts[1]


def imports(path: Path, root: Path):
    """``(module, lineno, inside_function)`` for every import of one file, resolved."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    in_function = {id(n) for f in ast.walk(tree)
                   if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                   for n in ast.walk(f) if n is not f}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(up + ([node.module] if node.module else []))
            # `from pkg import sub` imports the module pkg.sub when that is a file
            targets = []
            for a in node.names:
                sub = root.joinpath(*f"{base}.{a.name}".split("."))
                targets.append(f"{base}.{a.name}"
                               if sub.with_suffix(".py").is_file() or sub.is_dir() else base)
        else:
            continue
        for t in targets:
            yield t, node.lineno, id(node) in in_function


def source_files(root: Path) -> list[Path]:
    return sorted(p for d in ("vca_ref", "benchmarks") for p in (root / d).rglob("*.py"))


def layer_violations(root: Path) -> list[str]:
    """Every import of a higher layer, and every file whose layer is not in RANKS."""
    bad = []
    for path in source_files(root):
        rel = path.relative_to(root).as_posix()
        src = layer_of(module_name(path, root))
        if src not in RANKS:
            bad.append(f"{rel}: layer {src!r} is not in the layer order")
            continue
        for target, line, lazy in imports(path, root):
            dst = layer_of(target)
            if dst is None or dst == src:
                continue
            if dst not in RANKS:
                bad.append(f"{rel}:{line} imports {target} (layer {dst!r} not in the order)")
            elif RANKS[dst] >= RANKS[src] and not (lazy and (rel, dst) in LAZY_UPWARD):
                bad.append(f"{rel}:{line} imports {target}: layer {dst} (rank {RANKS[dst]}) "
                           f"is not below {src} (rank {RANKS[src]})")
    return bad


def foreign_imports(root: Path, package: str, allowed: tuple[str, ...]) -> list[str]:
    bad = []
    for path in source_files(root):
        rel = path.relative_to(root).as_posix()
        for target, line, _ in imports(path, root):
            if target.split(".")[0] == package and not rel.startswith(allowed):
                bad.append(f"{rel}:{line} imports {target}")
    return bad


def test_each_layer_imports_only_the_layers_below_it():
    assert layer_violations(ROOT) == []


def test_torch_only_in_the_pytorch_twins_and_benchmarks():
    assert foreign_imports(ROOT, "torch", TORCH_ALLOWED) == []


def test_cupy_only_in_the_backend_and_the_kernel_compiler():
    assert foreign_imports(ROOT, "cupy", CUPY_ALLOWED) == []


def test_the_page_names_every_layer():
    text = PAGE.read_text(encoding="utf-8")
    for layer in RANKS:
        path = {"vca_ref": "vca_ref/__init__.py", "fast.twins": "vca_ref/fast/",
                "benchmarks": "benchmarks/", "__main__": "vca_ref/__main__.py"}.get(layer)
        path = path or next(p for p in (f"vca_ref/{layer}/", f"vca_ref/{layer}.py")
                            if (ROOT / p).exists())
        assert f"`{path}" in text, f"docs/code-organisation.md does not name {path}"


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in {"vca_ref/__init__.py": "", "benchmarks/__init__.py": "", **files}.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return tmp_path


@pytest.mark.parametrize("files, culprit", [
    ({"vca_ref/ops/__init__.py": "", "vca_ref/nn/__init__.py": "",
      "vca_ref/ops/softmax.py": "from vca_ref.nn import Module\n"}, "vca_ref/ops/softmax.py:1"),
    ({"vca_ref/models/__init__.py": "", "vca_ref/models/vit.py": "",
      "vca_ref/nn/__init__.py": "", "vca_ref/nn/layers.py":
      "def f():\n    from ..models import vit\n"}, "vca_ref/nn/layers.py:2"),
    ({"vca_ref/ops/__init__.py": "", "vca_ref/fast/__init__.py": "",
      "vca_ref/fast/registry.py": "", "vca_ref/ops/linear.py":
      "from vca_ref.fast import registry\n"}, "vca_ref/ops/linear.py:1"),
    ({"vca_ref/fast/__init__.py": "from vca_ref.fast import registry\n",
      "vca_ref/fast/registry.py": ""}, "vca_ref/fast/__init__.py:1"),   # lazy only
    ({"vca_ref/widgets/__init__.py": ""}, "vca_ref/widgets/__init__.py"),
])
def test_the_checker_reports_an_upward_import(tmp_path, files, culprit):
    bad = layer_violations(_tree(tmp_path, files))
    assert any(b.startswith(culprit) for b in bad), bad


def test_the_checker_reports_torch_in_the_core(tmp_path):
    root = _tree(tmp_path, {"vca_ref/train/__init__.py": "", "vca_ref/train/optim.py":
                            "def f():\n    import torch.nn\n"})
    assert foreign_imports(root, "torch", TORCH_ALLOWED) == ["vca_ref/train/optim.py:2 imports torch.nn"]
