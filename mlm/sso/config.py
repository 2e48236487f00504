"""The settings single sign-on needs, built from a few values: pysaml2's service-provider
configuration (djangosaml2) and mozilla-django-oidc's settings; and the loader that keeps the
SAML configuration, with the identity provider's metadata, between requests.

The builders are pure functions: the settings module calls them with the environment's values,
and tests with those of an identity provider they start on loopback.
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
import threading
import time
from typing import TYPE_CHECKING, Any

import requests
import saml2
import saml2.saml
import saml2.xmldsig
from django.conf import settings

if TYPE_CHECKING:
    from django.http import HttpRequest
    from saml2.config import SPConfig

logger = logging.getLogger(__name__)

SAML_PATHS = {"acs": "/sso/saml2/acs/", "ls": "/sso/saml2/ls/", "metadata": "/sso/saml2/metadata/"}


def saml_config(
    *,
    site_url: str,
    idp_metadata: str,
    entity_id: str = "",
    key_file: str = "",
    cert_file: str = "",
) -> dict[str, Any]:
    """pysaml2's configuration of MLM as a SAML 2.0 service provider.

    `idp_metadata` is the identity provider's metadata, a URL (fetched again every
    MLM_SAML_METADATA_SECONDS) or a file. Assertions must be signed; an answer nobody asked for is
    refused. With a key and certificate, authentication and logout requests are signed too.
    """
    site_url = site_url.rstrip("/")
    if idp_metadata.startswith(("https://", "http://")):
        metadata: dict[str, Any] = {"remote": [{"url": idp_metadata}]}
    else:
        metadata = {"local": [idp_metadata]}
    signing = bool(key_file and cert_file)
    config: dict[str, Any] = {
        "entityid": entity_id or site_url + SAML_PATHS["metadata"],
        "xmlsec_binary": shutil.which("xmlsec1") or "/usr/bin/xmlsec1",
        "metadata": metadata,
        # Group attributes are often named by URI (Azure AD, ADFS), outside pysaml2's maps.
        "allow_unknown_attributes": True,
        "http_client_timeout": 10,
        "service": {
            "sp": {
                "name": "MLM",
                "endpoints": {
                    "assertion_consumer_service": [
                        (site_url + SAML_PATHS["acs"], saml2.BINDING_HTTP_POST)
                    ],
                    "single_logout_service": [
                        (site_url + SAML_PATHS["ls"], saml2.BINDING_HTTP_REDIRECT)
                    ],
                },
                "allow_unsolicited": False,
                "want_assertions_signed": True,
                "want_response_signed": False,
                "authn_requests_signed": signing,
                "logout_requests_signed": signing,
                "signing_algorithm": saml2.xmldsig.SIG_RSA_SHA256,
                "digest_algorithm": saml2.xmldsig.DIGEST_SHA256,
                "name_id_format": saml2.saml.NAMEID_FORMAT_UNSPECIFIED,
            }
        },
        "debug": False,
    }
    if signing:
        config["key_file"] = key_file
        config["cert_file"] = cert_file
        config["encryption_keypairs"] = [{"key_file": key_file, "cert_file": cert_file}]
    return config


def oidc_settings(
    *,
    client_id: str,
    client_secret: str,
    authorization_endpoint: str,
    token_endpoint: str,
    userinfo_endpoint: str,
    jwks_endpoint: str,
    end_session_endpoint: str = "",
    scopes: str = "openid email profile",
    sign_algo: str = "RS256",
) -> dict[str, Any]:
    """mozilla-django-oidc's settings for one OpenID Connect provider (authorization code flow
    with PKCE and a nonce, ID token signature checked against the provider's keys)."""
    return {
        "OIDC_RP_CLIENT_ID": client_id,
        "OIDC_RP_CLIENT_SECRET": client_secret,
        "OIDC_OP_AUTHORIZATION_ENDPOINT": authorization_endpoint,
        "OIDC_OP_TOKEN_ENDPOINT": token_endpoint,
        "OIDC_OP_USER_ENDPOINT": userinfo_endpoint,
        "OIDC_OP_JWKS_ENDPOINT": jwks_endpoint,
        "OIDC_RP_SIGN_ALGO": sign_algo,
        "OIDC_RP_SCOPES": scopes,
        "OIDC_USE_PKCE": True,
        "OIDC_STORE_ID_TOKEN": True,
        "OIDC_TIMEOUT": 10,
        "OIDC_OP_LOGOUT_ENDPOINT": end_session_endpoint,
        "OIDC_OP_LOGOUT_URL_METHOD": "mlm.sso.views.oidc_logout_url",
    }


_loaded: dict[str, tuple[float, SPConfig]] = {}
_loading = threading.Lock()


def saml_config_loader(request: HttpRequest | None = None) -> SPConfig:
    """djangosaml2's configuration loader: SAML_CONFIG loaded once and kept
    MLM_SAML_METADATA_SECONDS, so that a metadata URL is not fetched at every request; while the
    identity provider cannot be reached, the configuration last loaded is kept."""
    # Imported here: pysaml2 parses its XML schemas on import, a second or more.
    from saml2.config import SPConfig
    from saml2.httpbase import ConnectionError as HTTPConnectionError
    from saml2.mdstore import SourceNotFound

    key = json.dumps(settings.SAML_CONFIG, sort_keys=True, default=str)
    with _loading:
        kept = _loaded.get(key)
        if kept is not None and time.monotonic() - kept[0] < settings.MLM_SAML_METADATA_SECONDS:
            return kept[1]
        config = SPConfig()
        try:
            config.load(copy.deepcopy(settings.SAML_CONFIG))
        except (SourceNotFound, HTTPConnectionError, requests.RequestException):
            if kept is None:
                raise
            logger.warning("SAML metadata unreachable; keeping the copy loaded before")
            return kept[1]
        _loaded.clear()
        _loaded[key] = (time.monotonic(), config)
        return config
