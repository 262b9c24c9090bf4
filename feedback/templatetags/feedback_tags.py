from django import template
from django.utils.safestring import mark_safe

from feedback.rendering import is_long_text, render_markdown

register = template.Library()


@register.filter(name="safe_markdown")
def safe_markdown(text: str) -> str:
    # render_markdown escapes raw HTML and sanitises with nh3, so the result is safe to mark.
    return mark_safe(render_markdown(text))  # noqa: S308


@register.filter(name="is_long")
def is_long(text: str) -> bool:
    """Whether the annotate page folds this text behind "show all"."""
    return is_long_text(text)
