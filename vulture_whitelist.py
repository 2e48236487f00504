"""Names vulture cannot see used: read by templates, Django, Jinja or an ESP library by name,
or kept as the public operations of their module. Checked by `make lint` (see [tool.vulture])."""

# Templates read these.
_.percent  # campaigns/selectors.py: Progress
_.done_percent
_.skipped_rows  # campaigns/selectors.py: the audience summary
first_sent_at  # campaigns/reports/campaign.py: the campaign report
last_sent_at
delivered
height  # mlm/charts.py: the SVG charts
colour
dash
id
y_ticks
x_ticks
bottom
_.query_string  # recipients/forms.py: the recipient filters
_.filter_fields
_.has_filters
_.encoding_label  # recipients/importing/reading.py: the import job page
_.has_other_pages  # recipients/selectors.py: the pager
everything  # recipients/forms.py: form fields
confirm
dm  # consent/public_forms.py: form fields
website

# Django, Jinja and anymail call or read these by name.
shell  # mlm/context_processors.py, named in settings.TEMPLATES
ThrottledModelBackend  # settings.AUTHENTICATION_BACKENDS
OutboxBackend  # settings.EMAIL_BACKEND
ApiKeyAuthentication  # settings.REST_FRAMEWORK and SPECTACULAR_SETTINGS name these
ApiCursorPagination
KeyRole
ApiKeyThrottle
ProblemAutoSchema
ApiKeyScheme
UnitScopedViewSet  # api/scoping.py: the base of the API's viewsets
auto_schema  # drf-spectacular's extension interface
AttributesField  # api/serializers.py (not scanned: its fields are read by REST framework)
_.as_string  # mlm/mail/build.py: email.message.Message's interface
_.health_check_done  # Django's connection flag (mlm/db.py)
_.adding  # ModelForm instance state (admin)
_.track_clicks  # anymail's message attributes
_.track_opens
_.is_safe_attribute  # jinja2.sandbox.SandboxedEnvironment hooks
_.wrap_str_format
_.unsafe_undefined
intercepted_binops
kw  # Jinja filter signatures
break_long_words
cls  # campaigns/forms.py: a classmethod's signature
qname  # mlm/mail/sender_checks.py: the DNS resolver's signature
_.lifetime
_.case_sensitive  # consent/services.py: a model field set before save
env_str  # mlm/env.py: read by mlm/settings/
env_bool
env_int
env_list
_.database_settings  # mlm/embedded.py: read by mlm/settings/
_.redis_url
_.broker_url

# Public operations of their module that no view calls yet.
withdraw_everywhere  # consent/services.py: a global withdrawal (I9), for the admin and API
sending_domains_reencrypt  # mlm/services.py: after a rotation of MLM_DKIM_ENCRYPTION_KEY
_.renew  # mlm/mail/throttle.py: ConcurrencyLimiter's lease operations
_.holders

# Single sign-on: named in settings (AUTHENTICATION_BACKENDS, SAML/OIDC settings) or called by
# djangosaml2 and mozilla-django-oidc by name.
SamlBackend  # mlm/sso/backends.py
_.attribute_mapping
_.create_unknown_user
_.assertion_info
OidcBackend
_.get_or_create_user
saml_config  # mlm/sso/config.py
oidc_settings
saml_config_loader
_.last_login_at  # mlm/sso/services.py
_.authentication_form  # mlm/sso/views.py: Django's LoginView reads it
_.redirect_authenticated_user
saml_failure
_.login_failure
oidc_logout_url

# io.RawIOBase, expat and openpyxl call these by name (recipients/importing/workbooks.py).
_.readable
_.readinto
_.StartDoctypeDeclHandler
_.EntityDeclHandler
_.StartElementHandler
_.EndElementHandler
_.CharacterDataHandler
_.read_strings
_.shared_strings

# Django's query expressions API (recipients/segments.py).
_.get_source_expressions
_.set_source_expressions
_.as_sql

# REST framework reads these by name (api/*_views.py, api/strict_pages.py): view attributes,
# serializer method fields (get_<field>), field validators (validate_<field>), pagination hooks.
_.lookup_value_regex
_.pagination_class
_.get_serializer_class
_.get_page_size
_.kept_as_hash
_.rejected_rows
_.get_address
_.get_kept_as_hash
_.get_scope
_.get_note
_.get_counts
_.get_rejected_rows
_.get_progress
_.validate_mode
_.validate_default_category
