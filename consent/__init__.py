"""DM types, consent events, subscriptions, suppressions and the public recipient pages."""
