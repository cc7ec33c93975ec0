"""The README shows the Procfile as it is: a worker started from a stale copy would have no Runtime."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_readme_shows_the_procfiles_own_lines():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Deployment (Procfile)"):]
    block = section.split("```\n", 2)[1]
    assert block == (ROOT / "Procfile").read_text()


def test_the_five_entry_files_exist():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Where to start"):readme.index("## Architecture")]
    named = [line.split("`")[1] for line in section.splitlines() if line[:2] in {f"{n}." for n in range(1, 6)}]
    assert len(named) == 5 and all((ROOT / path).is_file() for path in named), named
