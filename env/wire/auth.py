"""Who may join a broker: a shared token, and addresses trusted without one.

The token travels as an additive ``TOKEN`` key of ``COMMAND/REGISTER`` (a swergio 0.0.2
broker ignores it). It lives in a file only its owner can read, is compared in constant
time, and never appears in a log line or an error message.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
import stat

from cartpole_tui.env import defaults

TOKEN_KEY = "TOKEN"
TOKEN_FILE_ENV = "CARTPOLE_TUI_TOKEN_FILE"
_MAX_TOKEN = 4096

Network = ipaddress.IPv4Network | ipaddress.IPv6Network  # an address or CIDR block trusted without a token

_client_token: str | None = None  # what this process's components present (see use_token)


class TokenError(ValueError):
    """The token file is missing, unreadable, empty or readable by others."""


def read_token_file(path: str) -> str:
    """The token in ``path``; TokenError (one line, without the token) when it cannot be used."""
    try:
        info = os.stat(path)
    except OSError as error:
        raise TokenError(f"token file {path}: {error.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise TokenError(f"token file {path}: not a regular file")
    if info.st_mode & 0o077:
        raise TokenError(
            f"token file {path} is readable by others (mode {stat.S_IMODE(info.st_mode):03o}); run: chmod 600 {path}"
        )
    try:
        with open(path, encoding="utf-8") as handle:
            token = handle.read(_MAX_TOKEN + 1).strip()
    except (OSError, UnicodeDecodeError) as error:
        raise TokenError(f"token file {path}: {getattr(error, 'strerror', None) or 'not UTF-8 text'}") from None
    if not token or len(token) > _MAX_TOKEN or any(ch.isspace() for ch in token):
        raise TokenError(f"token file {path}: expected one word of at most {_MAX_TOKEN} characters")
    if len(token) < defaults.MIN_TOKEN:  # a short one is guessed, back-off or not
        raise TokenError(
            f"token file {path}: the token has {len(token)} characters, at least {defaults.MIN_TOKEN} are needed "
            '(e.g. python3 -c "import secrets; print(secrets.token_urlsafe(32))")'
        )
    return token


def new_token() -> str:
    return secrets.token_urlsafe(32)


def tokens_match(presented: object, expected: str) -> bool:
    """Constant-time comparison; anything but a string never matches."""
    if not isinstance(presented, str):
        return False
    return hmac.compare_digest(presented.encode("utf-8", "replace"), expected.encode("utf-8"))


def use_token(token: str | None) -> None:
    """The token every component of this process presents from now on (None: none)."""
    global _client_token
    _client_token = token


def client_token() -> str | None:
    return _client_token


def parse_networks(texts: list[str] | tuple[str, ...]) -> tuple[Network, ...]:
    """``["10.0.0.0/8", "::1"]`` → ip networks; ValueError naming the bad one."""
    networks: list[Network] = []
    for text in texts:
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ValueError(f"expected an address or CIDR block (e.g. 10.0.0.0/8), got {text!r}") from None
    return tuple(networks)


def is_trusted(host: str, networks: tuple[Network, ...]) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``; a name or wildcard counts as open."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def open_bind_warning(what: str, host: str) -> str:
    return (
        f"warning: {what} on {host} is reachable from other machines and has no token: anyone who reaches it can "
        "drive it (use --token-file, or bind 127.0.0.1 and an SSH tunnel)"
    )
