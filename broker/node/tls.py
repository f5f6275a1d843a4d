"""TLS for the AMQPS listener: an ssl.SSLContext built from the settings RabbitMQ names
(``ssl_options.certfile``, ``keyfile``, ``cacertfile``, ``verify``, ``fail_if_no_peer_cert``).

``verify = verify_peer`` asks clients for a certificate signed by the CA; with
``fail_if_no_peer_cert = true`` a client without one is refused during the handshake.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import Config


class TLSConfigError(ValueError):
    """The certificate, key or CA file could not be loaded."""


def enabled(cfg: Config) -> bool:
    return bool(cfg.ssl_certfile and cfg.ssl_keyfile)


FILES = (("ssl_certfile", "certificate", "ssl_options.certfile"),
         ("ssl_keyfile", "private key", "ssl_options.keyfile"),
         ("ssl_cacertfile", "CA bundle", "ssl_options.cacertfile"))


def _check_files(cfg: Config) -> None:
    """Name the file (and the setting that chose it) a user got wrong."""
    from .config import origin

    for field, what, key in FILES:
        path = getattr(cfg, field)
        if not path:
            continue
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise TLSConfigError(f"TLS {what} {path} ({origin(cfg, field) or key}): "
                                 f"{exc.strerror or exc}") from None


def server_context(cfg: Config) -> ssl.SSLContext:
    _check_files(cfg)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cfg.ssl_certfile, cfg.ssl_keyfile)
        if cfg.ssl_cacertfile:
            context.load_verify_locations(cfg.ssl_cacertfile)
    except (OSError, ssl.SSLError) as exc:
        raise TLSConfigError(f"cannot load TLS certificate, key or CA: {exc}") from None
    if cfg.ssl_verify == "verify_peer":
        context.verify_mode = ssl.CERT_REQUIRED if cfg.ssl_fail_if_no_peer_cert \
            else ssl.CERT_OPTIONAL
    else:
        context.verify_mode = ssl.CERT_NONE
    return context
