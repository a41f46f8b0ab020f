"""Credentials inside URLs: refused where a URL is stored (the config, which travels with every
model), masked where one is shown (logs, error messages). One home for what counts as one: the
user-info password (``user:pw@host``) and query parameters such as libpq's ``password`` and
``sslpassword`` or a ``token``."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, unquote, unquote_plus, urlencode, urlsplit, urlunsplit

#: Query parameters that carry a credential.
CREDENTIAL_PARAMETER = re.compile(r"password|secret|token", re.IGNORECASE)
MASK = "***"


def _secrets(url: str) -> list[tuple[str, str]]:
    """(where, value) of every credential in ``url``: ``"password"`` for the user-info one, else the parameter."""
    parts = urlsplit(url)
    found = [("password", parts.password)] if parts.password is not None else []
    found += [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if CREDENTIAL_PARAMETER.search(k)]
    return [(where, value) for where, value in found if value is not None]


def refuse_credentials(url: str, instead: str) -> None:
    """Raise a ValueError naming what to use ``instead`` (never the value) if ``url`` carries a credential."""
    found = _secrets(url)
    if not found:
        return
    named = ", ".join(sorted({where for where, _ in found}))
    what = "a password" if urlsplit(url).password is not None else f"a credential ({named})"
    raise ValueError(f"must not carry {what} (the config is stored with every model): use {instead}")


def redact(uri: str) -> str:
    """``uri`` with every credential masked (``https://user:***@host/?token=***``): safe for logs."""
    if not _secrets(uri):
        return uri
    parts = urlsplit(uri)
    netloc = parts.netloc
    if parts.password is not None:
        host = parts.hostname or ""
        netloc = f"{parts.username}:{MASK}@{host}" + (f":{parts.port}" if parts.port else "")
    query = urlencode(
        [(k, MASK if CREDENTIAL_PARAMETER.search(k) else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)],
        safe="*",
    )
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def scrub(text: str, uri: str) -> str:
    """``text`` with every credential of ``uri`` replaced, as written in the URL (percent-encoded:
    an error message quotes the URL) and decoded."""
    values = {value for _, value in _secrets(uri)}
    for pair in urlsplit(uri).query.split("&"):  # the raw, still-encoded spellings
        name, _, raw = pair.partition("=")
        if CREDENTIAL_PARAMETER.search(unquote_plus(name)):
            values.add(raw)
    password = urlsplit(uri).password
    if password:
        values.add(unquote(password))
    for value in sorted((v for v in values if v), key=len, reverse=True):
        text = text.replace(value, MASK)
    return text
