"""Who bills whom: an entity's legal profile and a customer's billing details, as an
invoice shows them (seller and buyer), with their net terms and the customer's locale.

Validated here: text within bounds, an e-mail address, net terms in days, a locale Babel
knows, a logo that is a small image given as a ``data:`` URI (inlined in the HTML and the
PDF: a document loads nothing from another host). A tax id is text: it is not checked
against a registry.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

from domain.validation import Fields, Invalid, describe

MAX_LOGO_BYTES = 64 * 1024
LOGO = re.compile(r"^data:image/(png|jpeg|gif|webp);base64,([A-Za-z0-9+/=\s]+)$")
LOCALES = ("en", "de", "fr", "ja", "pt_BR", "en_US", "en_GB", "es", "it", "nl")
MAX_NET_TERMS = 365


@dataclass(frozen=True)
class Party:
    """The legal details of a seller (an entity) or a buyer (a customer)."""

    legal_name: str | None = None
    address: str | None = None  # lines separated by newlines
    tax_id: str | None = None
    email: str | None = None
    net_terms: int | None = None  # days from issue to due date
    # a seller's own
    logo: str | None = None
    payment_instructions: str | None = None
    footer: str | None = None
    # a buyer's own
    locale: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Party:
        return cls(**(data or {}))


SELLER = ("legal_name", "address", "tax_id", "email", "net_terms", "logo",
          "payment_instructions", "footer")
BUYER = ("legal_name", "address", "tax_id", "net_terms", "locale")


def _text(f: Fields, name: str, limit: int) -> str | None:
    value = f.raw(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        f.fail(name, f"must be non-empty text, got {describe(value)}")
    if len(value) > limit:
        f.fail(name, f"must be at most {limit} characters")
    if "\x00" in value:
        f.fail(name, "must not contain NUL")
    return value.strip()


def parse_party(f: Fields, names: tuple[str, ...]) -> Party:
    """The party fields among ``names`` of a catalog item (the others are the item's)."""
    found: dict[str, Any] = {}
    for name in names:
        if name in ("legal_name", "tax_id"):
            found[name] = _text(f, name, 255)
        elif name in ("address", "payment_instructions", "footer"):
            found[name] = _text(f, name, 2000)
        elif name == "email":
            email = _text(f, name, 255)
            if email is not None and ("@" not in email or any(c in email for c in " ,;<>")):
                f.fail(name, f"must be one email address, got {describe(email)}")
            found[name] = email
        elif name == "net_terms":
            value = f.raw(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or not 0 <= value <= MAX_NET_TERMS):
                f.fail(name, f"must be a number of days from 0 to {MAX_NET_TERMS}, got "
                             f"{describe(value)}")
            found[name] = value
        elif name == "locale":
            value = _text(f, name, 20)
            if value is not None and value.replace("-", "_") not in LOCALES:
                f.fail(name, f"must be one of {', '.join(LOCALES)}; got {describe(value)}")
            found[name] = None if value is None else value.replace("-", "_")
        elif name == "logo":
            found[name] = parse_logo(f.raw(name), f.at(name))
    return Party(**found)


def parse_logo(value: Any, path: str) -> str | None:
    """A PNG, JPEG, GIF or WebP image of at most 64 KiB as a ``data:`` URI."""
    if value is None:
        return None
    match = LOGO.match(value) if isinstance(value, str) else None
    if match is None:
        raise Invalid(path, "must be an image as a data: URI (data:image/png;base64,…; png, "
                            "jpeg, gif or webp)")
    try:
        data = base64.b64decode("".join(match.group(2).split()), validate=True)
    except (binascii.Error, ValueError):
        raise Invalid(path, "is not valid base64") from None
    if len(data) > MAX_LOGO_BYTES:
        raise Invalid(path, f"is {len(data):,} bytes; at most {MAX_LOGO_BYTES:,}")
    signatures = {"png": b"\x89PNG", "jpeg": b"\xff\xd8", "gif": b"GIF8", "webp": b"RIFF"}
    if not data.startswith(signatures[match.group(1)]):
        raise Invalid(path, f"is not a {match.group(1)} image")
    return f"data:image/{match.group(1)};base64,{base64.b64encode(data).decode()}"
