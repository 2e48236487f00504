"""Identity providers on loopback for the single sign-on tests: a SAML 2.0 one built on
pysaml2's Server, and an OpenID Connect one (oidc-provider-mock), each in a thread of the test
process. Keys and certificates are made at test time; nothing secret is committed."""

from __future__ import annotations

import datetime
import html
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs

import oidc_provider_mock
import saml2
import saml2.saml
import saml2.xmldsig
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from saml2.config import IdPConfig, SPConfig
from saml2.metadata import entity_descriptor
from saml2.server import Server
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from mlm.sso.config import oidc_settings, saml_config


def key_pair(directory: Path, name: str) -> tuple[Path, Path]:
    """A fresh RSA key and a self-signed certificate for it, as PEM files."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = directory / f"{name}.key", directory / f"{name}.crt"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


@contextmanager
def serve(app) -> Iterator[str]:
    """Serve a WSGI app on loopback in a thread; yields its base URL."""
    server = make_server("localhost", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    try:
        yield f"http://localhost:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(5)
        server.server_close()


@dataclass
class SamlIdentityProvider:
    """A SAML 2.0 identity provider: a page with a button per person, signed answers (response
    and assertion) posted back to the service provider, and single logout."""

    directory: Path
    users: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    logged_out: list[str] = field(default_factory=list)
    url: str = ""
    server: Server | None = None

    def configure(self, *, url: str, sp_site_url: str) -> dict:
        """Make both ends' metadata; returns the service provider's SAML_CONFIG."""
        self.url = url
        idp_key, idp_cert = key_pair(self.directory, "idp")
        sp_key, sp_cert = key_pair(self.directory, "sp")
        idp = {
            "entityid": f"{url}/metadata",
            "service": {
                "idp": {
                    "name": "Loopback identity provider",
                    "endpoints": {
                        "single_sign_on_service": [(f"{url}/sso", saml2.BINDING_HTTP_REDIRECT)],
                        "single_logout_service": [(f"{url}/slo", saml2.BINDING_HTTP_REDIRECT)],
                    },
                    "policy": {"default": {"lifetime": {"minutes": 5}}},
                    "name_id_format": [saml2.saml.NAMEID_FORMAT_PERSISTENT],
                    "signing_algorithm": saml2.xmldsig.SIG_RSA_SHA256,
                    "digest_algorithm": saml2.xmldsig.DIGEST_SHA256,
                }
            },
            "key_file": str(idp_key),
            "cert_file": str(idp_cert),
        }
        idp_metadata = self.directory / "idp-metadata.xml"
        idp_metadata.write_text(str(entity_descriptor(IdPConfig().load(dict(idp)))))
        sp = saml_config(
            site_url=sp_site_url,
            idp_metadata=str(idp_metadata),
            key_file=str(sp_key),
            cert_file=str(sp_cert),
        )
        sp_metadata = self.directory / "sp-metadata.xml"
        sp_metadata.write_text(str(entity_descriptor(SPConfig().load(dict(sp)))))
        self.server = Server(config=IdPConfig().load({**idp, "metadata": {"local": [sp_metadata]}}))
        return sp

    def __call__(self, environ, start_response):
        request = Request(environ)
        handler = {"/sso": self.login_page, "/sso/answer": self.answer, "/slo": self.logout}.get(
            request.path
        )
        response = handler(request) if handler else Response("not here", status=404)
        return response(environ, start_response)

    def login_page(self, request: Request) -> Response:
        """The identity provider's login: one button per person it knows."""
        saml_request = request.args["SAMLRequest"]
        self.server.parse_authn_request(saml_request, saml2.BINDING_HTTP_REDIRECT)
        hidden = "".join(
            f'<input type="hidden" name="{name}" value="{html.escape(value)}">'
            for name, value in (
                ("SAMLRequest", saml_request),
                ("RelayState", request.args.get("RelayState", "")),
            )
        )
        buttons = "".join(
            f'<button type="submit" name="user" value="{html.escape(name)}">{html.escape(name)}'
            "</button>"
            for name in self.users
        )
        page = (
            "<h1>Loopback identity provider</h1>"
            f'<form method="post" action="/sso/answer">{hidden}{buttons}</form>'
        )
        return Response(page, mimetype="text/html")

    def answer(self, request: Request) -> Response:
        """A signed response for the person chosen, posted to the service provider's ACS."""
        parsed = self.server.parse_authn_request(
            request.form["SAMLRequest"], saml2.BINDING_HTTP_REDIRECT
        )
        user = request.form["user"]
        args = self.server.response_args(parsed.message, [saml2.BINDING_HTTP_POST])
        response = self.server.create_authn_response(
            self.users[user],
            userid=user,
            name_id=saml2.saml.NameID(format=saml2.saml.NAMEID_FORMAT_PERSISTENT, text=user),
            authn={"class_ref": saml2.saml.AUTHN_PASSWORD, "authn_auth": self.url},
            sign_response=True,
            sign_assertion=True,
            **args,
        )
        http = self.server.apply_binding(
            saml2.BINDING_HTTP_POST,
            str(response),
            args["destination"],
            request.form.get("RelayState", ""),
            response=True,
        )
        return Response(http["data"], mimetype="text/html")

    def logout(self, request: Request) -> Response:
        """Single logout: end the person's session here and send the browser back."""
        query = parse_qs(request.query_string.decode())
        parsed = self.server.parse_logout_request(
            query["SAMLRequest"][0], saml2.BINDING_HTTP_REDIRECT
        )
        self.logged_out.append(parsed.message.name_id.text)
        response = self.server.create_logout_response(parsed.message, [saml2.BINDING_HTTP_REDIRECT])
        binding, destination = self.server.pick_binding(
            "single_logout_service", [saml2.BINDING_HTTP_REDIRECT], "spsso", parsed
        )
        http = self.server.apply_binding(
            binding,
            str(response),
            destination,
            query.get("RelayState", [""])[0],
            response=True,
        )
        location = dict(http["headers"])["Location"]
        return Response(status=302, headers={"Location": location})


@contextmanager
def oidc_provider(users: dict[str, dict]) -> Iterator[str]:
    """An OpenID Connect provider (oidc-provider-mock) that signs its ID tokens with a key of
    its own; yields its issuer URL. Each person is a button on its authorization page; PUT
    /users/<sub> changes their claims."""
    app = oidc_provider_mock.app(
        require_nonce=True,
        user_claims=[
            oidc_provider_mock.User(sub=sub, claims=claims) for sub, claims in users.items()
        ],
    )
    with serve(app) as url:
        yield url


def oidc_settings_for(issuer: str) -> dict:
    """MLM's OpenID Connect settings for the provider at `issuer` (its discovery document's
    endpoints)."""
    return oidc_settings(
        client_id="mlm-tests",
        client_secret="not-secret",
        authorization_endpoint=f"{issuer}/oauth2/authorize",
        token_endpoint=f"{issuer}/oauth2/token",
        userinfo_endpoint=f"{issuer}/userinfo",
        jwks_endpoint=f"{issuer}/jwks",
        end_session_endpoint=f"{issuer}/oauth2/end_session",
    )
