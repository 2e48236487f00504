"""The starter layout every new unit gets: a plain wrapper whose bilingual footer passes every
content check, so a first draft needs only a subject and a body."""

# The Chinese statement uses full-width punctuation on purpose.
# ruff: noqa: RUF001

STARTER_LAYOUT_NAME = "Starter layout"

STARTER_LAYOUT = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ campaign.name }}</title>
<style>
  body { margin: 0; padding: 0; background: #f3f4f6; font-family: Helvetica, Arial, sans-serif; }
  .page { max-width: 600px; margin: 0 auto; background: #ffffff; }
  .masthead { padding: 20px 28px; font-size: 20px; font-weight: bold; color: #111827; }
  .content { padding: 8px 28px 24px; color: #1f2937; font-size: 16px; line-height: 1.5; }
  .footer { padding: 20px 28px; color: #6b7280; font-size: 12px; line-height: 1.5;
            border-top: 1px solid #e5e7eb; }
  .footer a { color: #374151; }
</style>
</head>
<body>
<div class="page">
  <div class="masthead">{{ unit.name }}</div>
  <div class="content">
{{ content }}
  </div>
  <div class="footer">
    <p>{% for line in unit.postal_address.splitlines() %}{{ line }}<br>{% endfor %}</p>
    <p>You receive this mail because you agreed to hear from {{ unit.name }}. To stop
    receiving it, <a href="{{ unsubscribe_url }}">unsubscribe</a> or
    <a href="{{ preferences_url }}">choose what you receive</a>.</p>
    <p lang="zh-Hant">你收到這封電郵，是因為你同意接收{{ unit.name }}的資訊。如不想再收到，請按此
    <a href="{{ unsubscribe_url }}">取消訂閱</a>，
    或<a href="{{ preferences_url }}">管理訂閱選項</a>。</p>
  </div>
</div>
</body>
</html>
"""
