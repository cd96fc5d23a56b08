"""The manual builds and the README's links lead somewhere.

`mkdocs build --strict` fails on a link to a missing page and, with mkdocs.yml's
`validation`, on a missing anchor; the README is outside MkDocs, so its links to
files are checked here. Neither needs Ray or TensorFlow.
"""

import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parent.parent

# [text](target) and ![alt](target); the target ends at whitespace or ")".
MARKDOWN_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def test_mkdocs_strict_build_succeeds(tmp_path):
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert built.returncode == 0, f"mkdocs build --strict failed:\n{built.stdout}{built.stderr}"
    assert (tmp_path / "site" / "index.html").is_file()


def relative_links(markdown: str) -> list[str]:
    """Link targets that name a file in the repository: no URL scheme, no bare #anchor."""
    without_code = re.sub(r"```.*?```", "", markdown, flags=re.S)
    without_code = re.sub(r"`[^`\n]*`", "", without_code)
    targets = MARKDOWN_LINK.findall(without_code)
    return [t for t in targets if not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", t) and not t.startswith("#")]


def test_relative_links_finds_file_links_only():
    text = "[a](docs/x.md) ![b](docs/y.png) [c](https://e.org) [d](#top) `[e](no.md)` [f](docs/z.md#part)"
    assert relative_links(text) == ["docs/x.md", "docs/y.png", "docs/z.md#part"]


def test_every_relative_link_in_the_readme_names_an_existing_file():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    links = relative_links(readme)
    assert links, "README.md links to no file: the check would pass on nothing"
    missing = [link for link in links if not (ROOT / unquote(link.split("#", 1)[0])).exists()]
    assert not missing, f"README.md links to files that do not exist: {missing}"
