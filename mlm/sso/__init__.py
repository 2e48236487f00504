"""Single sign-on for staff: SAML 2.0 (djangosaml2) and OpenID Connect (mozilla-django-oidc),
with unit memberships and roles given by the identity provider's groups through mapping rules."""
