"""Single sign-on from the environment: off by default, refused when half set up, and MLM's SAML
metadata holds what the identity provider needs."""

from __future__ import annotations

from mlm.sso.config import saml_config, saml_config_loader
from tests.mlm.test_settings import production_env, run
from tests.sso.providers import SamlIdentityProvider, serve

SHOW = (
    "import django; from django.conf import settings; django.setup(); "
    "print(settings.MLM_SAML_ENABLED, settings.MLM_OIDC_ENABLED, settings.AUTHENTICATION_BACKENDS)"
)


def test_both_protocols_are_off_by_default(tmp_path):
    result = run(["-c", SHOW], production_env(tmp_path))
    assert result.stdout.strip() == "False False ['mlm.logins.ThrottledModelBackend']"


def test_oidc_without_its_endpoints_refuses_to_start(tmp_path):
    result = run(["manage.py", "check"], production_env(tmp_path, MLM_OIDC_CLIENT_ID="mlm"))
    assert result.returncode != 0
    assert "MLM_OIDC_CLIENT_SECRET, MLM_OIDC_AUTHORIZATION_ENDPOINT" in result.stderr


def test_local_login_for_staff_only_without_single_sign_on_refuses_to_start(tmp_path):
    env = production_env(tmp_path, MLM_LOCAL_LOGIN_STAFF_ONLY="1")
    result = run(["manage.py", "check"], env)
    assert result.returncode != 0
    assert "nobody but staff could log in" in result.stderr


def test_both_protocols_set_up_pass_the_deploy_checks(tmp_path):
    idp = SamlIdentityProvider(tmp_path)
    idp.configure(url="https://idp.example.edu", sp_site_url="https://mlm.example.edu")
    endpoints = {
        f"MLM_OIDC_{name}": f"https://login.example.edu/{name.lower()}"
        for name in ("AUTHORIZATION_ENDPOINT", "TOKEN_ENDPOINT", "USERINFO_ENDPOINT")
    }
    env = production_env(
        tmp_path,
        MLM_SAML_IDP_METADATA=str(tmp_path / "idp-metadata.xml"),
        MLM_OIDC_CLIENT_ID="mlm",
        MLM_OIDC_CLIENT_SECRET="secret",
        MLM_OIDC_JWKS_ENDPOINT="https://login.example.edu/jwks",
        MLM_LOCAL_LOGIN_STAFF_ONLY="1",
        **endpoints,
    )
    shown = run(["-c", SHOW], env)
    assert shown.stdout.startswith("True True"), shown.stderr
    assert "SamlBackend" in shown.stdout and "OidcBackend" in shown.stdout
    check = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], env)
    assert check.returncode == 0, check.stdout + check.stderr


def test_the_saml_metadata_names_the_endpoints_the_provider_needs(client, db, settings, tmp_path):
    idp = SamlIdentityProvider(tmp_path)
    settings.SAML_CONFIG = idp.configure(
        url="https://idp.example.edu", sp_site_url="https://mlm.example.edu"
    )
    settings.MLM_SAML_ENABLED = True
    metadata = client.get("/sso/saml2/metadata/")
    assert metadata.status_code == 200
    xml = metadata.content.decode()
    assert 'entityID="https://mlm.example.edu/sso/saml2/metadata/"' in xml
    assert 'Location="https://mlm.example.edu/sso/saml2/acs/"' in xml
    assert 'Location="https://mlm.example.edu/sso/saml2/ls/"' in xml
    assert "X509Certificate" in xml  # MLM's signing certificate


def test_a_metadata_url_is_fetched_again_only_after_a_while_and_kept_while_down(settings, tmp_path):
    idp = SamlIdentityProvider(tmp_path)
    idp.configure(url="https://idp.example.edu", sp_site_url="https://mlm.example.edu")
    xml = (tmp_path / "idp-metadata.xml").read_bytes()
    fetches = []

    def metadata(environ, start_response):
        fetches.append(environ["PATH_INFO"])
        start_response("200 OK", [("Content-Type", "application/samlmetadata+xml")])
        return [xml]

    with serve(metadata) as url:
        settings.SAML_CONFIG = saml_config(
            site_url="https://mlm.example.edu", idp_metadata=f"{url}/metadata"
        )
        first = saml_config_loader()
        assert saml_config_loader() is first and len(fetches) == 1
        assert "https://idp.example.edu/metadata" in first.metadata.identity_providers()
    settings.MLM_SAML_METADATA_SECONDS = 0
    assert saml_config_loader() is first  # the provider is down: the copy loaded before


def test_an_unreachable_metadata_url_is_a_503_that_says_so(client, db, settings):
    with serve(lambda environ, start_response: []) as url:
        pass  # the port is closed again: nobody answers there
    settings.SAML_CONFIG = saml_config(
        site_url="https://mlm.example.edu", idp_metadata=f"{url}/metadata"
    )
    settings.MLM_SAML_ENABLED = True
    answer = client.get("/sso/saml2/login/")
    assert answer.status_code == 503
    assert "The identity provider could not be reached" in answer.text
