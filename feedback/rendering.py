"""Safe Markdown for untrusted text (model output, prompts, instructions, comments).

markdown-it-py with raw HTML off renders Markdown, tables and code blocks; images are disabled (no remote
fetches from annotators' browsers). Fenced code with a language Pygments knows is highlighted on the server
(spans with Pygments' short class names; the colours are `static/feedback/pygments.css`). nh3 (ammonia)
sanitises the result as a second wall: only the tags below, `class` only with the values Pygments emits,
so no script, event handler, style or javascript: link survives — inside code or outside.
"""

from __future__ import annotations

import html

import nh3
from markdown_it import MarkdownIt
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.token import STANDARD_TYPES
from pygments.util import ClassNotFound

# Long completions are shown folded behind "show all" (annotate.js folds them; without JavaScript they stay whole).
LONG_TEXT_LINES = 25
LONG_TEXT_CHARS = 2000
HIGHLIGHT_LIMIT_CHARS = 100_000  # beyond this a code block is shown plain (highlighting cost grows with size)

_formatter = HtmlFormatter(nowrap=True)
PYGMENTS_CLASSES = {cls for cls in STANDARD_TYPES.values() if cls}


def _highlight(code: str, lang: str, _attrs) -> str:
    """The inside of <code> for a fenced block: Pygments spans when the language is known, else escaped text."""
    name = (lang or "").strip().split(maxsplit=1)[0] if lang else ""
    if not name or len(code) > HIGHLIGHT_LIMIT_CHARS:
        return ""  # markdown-it escapes the code itself
    try:
        lexer = get_lexer_by_name(name.lower(), stripnl=False)
    except ClassNotFound:
        return ""
    return highlight(code, lexer, _formatter) or html.escape(code)


_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False,
                                      "highlight": _highlight}).disable("image")
_markdown.enable("table") if "table" in _markdown.get_all_rules()["block"] else None

ALLOWED_TAGS = {
    "p", "br", "hr", "pre", "code", "blockquote", "em", "strong", "del", "ul", "ol", "li", "a",
    "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td", "span",
}
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "code": {"class"}, "ol": {"start"}}


def render_markdown(text: str) -> str:
    rendered = _markdown.render(text or "")
    return nh3.clean(
        rendered, tags=ALLOWED_TAGS, attributes=ALLOWED_ATTRIBUTES, url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow ugc", allowed_classes={"span": PYGMENTS_CLASSES},
    )


def is_long_text(text: str) -> bool:
    """Whether a text is long enough to be shown folded (more than LONG_TEXT_LINES lines or LONG_TEXT_CHARS characters)."""
    text = text or ""
    return len(text) > LONG_TEXT_CHARS or text.count("\n") >= LONG_TEXT_LINES


def pygments_css() -> str:
    """The stylesheet for the highlighted spans (written to static/feedback/pygments.css)."""
    return _formatter.get_style_defs("pre code")
