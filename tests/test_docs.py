"""The documentation keeps up with the code: the architecture page names every module, the README stays a front
page, and every page it links to exists."""

import re
from pathlib import Path

from tests.test_layers import ROOT, project_modules

DOCS = ROOT / "docs"


def test_the_architecture_page_names_every_module():
    page = (DOCS / "architecture.md").read_text()
    missing = sorted(str(path.relative_to(ROOT)) for name, path in project_modules().items()
                     if path.name != "__init__.py" and "management/commands" not in path.as_posix()
                     and str(path.relative_to(ROOT)) not in page)
    assert missing == []


def test_the_readme_is_a_front_page_whose_links_resolve():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    links = re.findall(r"\]\(((?:docs/)[^)#]+)", readme)
    assert links and [link for link in links if not (ROOT / link).is_file()] == []


def test_every_page_in_the_site_navigation_exists():
    nav = re.findall(r":\s*([\w./-]+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(), flags=re.MULTILINE)
    assert nav and [page for page in nav if not (DOCS / page).is_file()] == []
