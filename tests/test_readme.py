"""The README's usage example runs as written (the python block under "## Usage")."""
import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def usage_block() -> str:
    """The first ```python block between the "## Usage" heading and the next "## " heading."""
    text = README.read_text(encoding="utf-8")
    m = re.search(r"^## Usage[ \t]*\n(.*?)(?=^## |\Z)", text, flags=re.S | re.M)
    assert m, 'README.md has no "## Usage" section'
    block = re.search(r"^```python[ \t]*\n(.*?)^```", m.group(1), flags=re.S | re.M)
    assert block, 'the "## Usage" section of README.md has no ```python block'
    return block.group(1)


def test_readme_usage_example_runs():
    code = usage_block()
    assert "import vca_ref" in code or "from vca_ref" in code        # it uses the package
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, f"{README}:## Usage", "exec"), {"__name__": "__readme__"})
    # a trailing "# True" comment on a print line is a promise about what it prints
    promised = [line for line in code.splitlines()
                if line.lstrip().startswith("print(") and line.rstrip().endswith("# True")]
    printed = out.getvalue().splitlines()
    for line in promised:
        assert "True" in printed, f"README promises True from {line.strip()!r}, printed {printed}"


def section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    m = re.search(rf"^## {title}[ \t]*\n(.*?)(?=^## |\Z)", text, flags=re.S | re.M)
    assert m, f'README.md has no "## {title}" section'
    return m.group(1)


def test_readme_layout_table_names_only_paths_that_exist():
    rows = [line for line in section("Layout").splitlines() if line.startswith("| `")]
    paths = [p for row in rows for p in re.findall(r"`([\w./-]+)`", row.split("|")[1])]
    assert len(paths) >= 10, paths
    missing = [p for p in paths if not (README.parent / p).exists()]
    assert not missing, f"README's layout table names paths that do not exist: {missing}"


def test_readme_quick_start_has_exactly_two_commands():
    blocks = re.findall(r"^```bash[ \t]*\n(.*?)^```", section("Quick start"), flags=re.S | re.M)
    commands = [line for b in blocks for line in b.splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    assert len(commands) == 2, commands


# Text about how the project was made, not about VCA; and a spec file outside the repository.
OFF_TOPIC = re.compile(r"\bthe issue\b|\bissue's\b|\bissue \d|shared with other|machines here"
                       r"|not run yet|(?-i:(?<![\w/])SPEC\.md)", re.I)


def test_text_speaks_of_the_method_and_the_project_only():
    root = README.parent
    files = [README, root / "benchmarks" / "README.md",
             *(p for p in (root / "docs").rglob("*.md")),
             *(root / "notebooks").glob("*.ipynb"),
             *(root / "vca_ref").rglob("*.py"), *(root / "benchmarks").glob("*.py")]
    hits = [f"{p.relative_to(root)}:{n}: {line.strip()[:100]}"
            for p in files for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
            if OFF_TOPIC.search(line)]
    assert not hits, "\n".join(hits)
    assert OFF_TOPIC.search("as the issue's targets say") and OFF_TOPIC.search("see " + "SPEC" + ".md")
    assert not OFF_TOPIC.search("the layer of docs/spec.md")
