"""Where templates live, and the Jinja2 environment for mail (HTML autoescaped)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import jinja2


def templates_dir() -> Path:
    """The top-level templates/ of a checkout, or the copy installed as mailbot/templates."""
    checkout = Path(__file__).resolve().parent.parent / "templates"
    if checkout.is_dir():
        return checkout
    return Path(__file__).resolve().parent / "templates"


@lru_cache(maxsize=1)
def mail_env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        autoescape=lambda name: bool(name) and name.endswith(".html.j2"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=False,
        keep_trailing_newline=True,
    )


def render(name: str, **context) -> str:
    return mail_env().get_template(name).render(**context)
