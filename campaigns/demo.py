"""The demo newsletter and its layout: `make run`'s demo data, the content-check tests and
bench/render.py all use these same templates (about 8 KB of HTML with the layout)."""

# The footer's Chinese statement uses full-width punctuation on purpose.
# ruff: noqa: RUF001

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser

from mlm.models import SenderUnit

DEMO_LAYOUT_NAME = "Faculty newsletter"
DEMO_CAMPAIGN_NAME = "Engineering news, spring"
DEMO_IDENTITY_EMAIL = "news@engineering.example.edu"
DEMO_DKIM_SELECTOR = "mlm-demo"

DEMO_SUBJECT = "{{ first_name|default('Friend') }}, your spring news from {{ unit.name }}"

DEMO_LAYOUT = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ campaign.name }}</title>
<style>
  body { margin: 0; padding: 0; background: #f3f4f6; font-family: Helvetica, Arial, sans-serif; }
  .wrapper { width: 100%; background: #f3f4f6; padding: 24px 0; }
  .page { max-width: 600px; margin: 0 auto; background: #ffffff; border-radius: 6px; }
  .masthead { background: #0b3d91; color: #ffffff; padding: 20px 28px; font-size: 20px; }
  .masthead a { color: #ffffff; text-decoration: none; font-weight: bold; }
  .content { padding: 24px 28px; color: #1f2937; font-size: 16px; line-height: 1.5; }
  .content h1 { font-size: 24px; color: #0b3d91; margin: 0 0 12px; }
  .content h2 { font-size: 19px; color: #0b3d91; margin: 24px 0 8px; }
  .content p { margin: 0 0 14px; }
  .button { display: inline-block; background: #c2410c; color: #ffffff; padding: 10px 18px;
            border-radius: 4px; text-decoration: none; font-weight: bold; }
  .events { width: 100%; border-collapse: collapse; margin: 8px 0 16px; }
  .events th { text-align: left; background: #e5e7eb; padding: 6px 8px; font-size: 14px; }
  .events td { border-bottom: 1px solid #e5e7eb; padding: 6px 8px; font-size: 14px; }
  .story img { width: 100%; max-width: 544px; height: auto; border-radius: 4px; }
  .story img.portrait { width: 120px; float: right; margin: 0 0 8px 12px; }
  .highlights { padding-left: 20px; margin: 0 0 14px; }
  .highlights li { margin-bottom: 6px; }
  .footer { padding: 20px 28px; color: #6b7280; font-size: 12px; line-height: 1.5;
            border-top: 1px solid #e5e7eb; }
  .footer a { color: #374151; }
  @media (max-width: 620px) {
    .content, .footer, .masthead { padding-left: 16px; padding-right: 16px; }
    .content h1 { font-size: 21px; }
  }
</style>
</head>
<body>
<div class="wrapper">
<div class="page">
  <div class="masthead"><a href="https://www.example.edu/engineering/">{{ unit.name }}</a></div>
  <div class="content">
{{ content }}
  </div>
  <div class="footer">
    <p>{% for line in unit.postal_address.splitlines() %}{{ line }}<br>{% endfor %}</p>
    <p>You receive this {{ dm_type.name|lower }} mail because you agreed to hear from
    {{ unit.name }}. To stop receiving it, <a href="{{ unsubscribe_url }}">unsubscribe</a>
    or <a href="{{ preferences_url }}">choose what you receive</a>.</p>
    <p>你收到這封電郵，是因為你同意接收{{ unit.name }}的資訊。如不想再收到，請按此
    <a href="{{ unsubscribe_url }}">取消訂閱</a>，
    或<a href="{{ preferences_url }}">管理訂閱選項</a>。</p>
  </div>
</div>
</div>
</body>
</html>
"""

DEMO_BODY = """<h1>Hello {{ first_name|default("friend") }},</h1>
<p>Spring is busy in the Faculty: new laboratories open, our students bring home prizes, and
the doors of the Innovation Hall are open to everyone on Open Day. Here is what happened and
what is coming{% if attributes.programme %} for the {{ attributes.programme }}
community{% endif %}.</p>

<div class="story">
  <h2>The Robotics Laboratory opens</h2>
  <img src="https://www.example.edu/engineering/images/robotics-lab.jpg"
       alt="Students testing a walking robot in the new laboratory" width="544">
  <p>The new Robotics Laboratory on the third floor of the Innovation Hall gives our
  undergraduate teams 400 square metres of test space, six industrial arms and a motion-capture
  studio. Teams in the inter-university robotics contest already book it every evening.</p>
  <p><a class="button" href="https://www.example.edu/engineering/news/robotics-lab">Read the
  story</a></p>
</div>

<div class="story">
  <h2>Prizes for our students</h2>
  <p>Three final-year projects won awards at the regional engineering design competition:
  a low-cost water-quality sensor for fish farms, a bicycle-sharing rebalancing planner, and a
  hearing aid that costs a tenth of a commercial one. Congratulations to all the teams and their
  supervisors.</p>
  <p><a href="https://www.example.edu/engineering/news/design-awards">Meet the winning teams</a></p>
</div>

<div class="story">
  <h2>Research highlights</h2>
  <ul class="highlights">
    <li><strong>Cooler streets.</strong> A new reflective pavement tested on campus lowers road
    temperatures by up to six degrees on summer afternoons.</li>
    <li><strong>Safer slopes.</strong> Low-cost sensors now watch 40 hillside slopes and warn the
    maintenance teams before heavy rain turns into landslides.</li>
    <li><strong>Cleaner harbour.</strong> A floating robot built by postgraduate students maps
    plastic waste in the harbour and reports it to the clean-up boats.</li>
    <li><strong>Quieter trains.</strong> Rail dampers designed with the railway operator cut
    night-time noise for 20,000 residents along the line.</li>
  </ul>
  <p><a href="https://www.example.edu/engineering/research">More research news</a></p>
</div>

<div class="story">
  <h2>Scholarships and support</h2>
  <p>Thanks to the generosity of our alumni and friends, twelve new entrance scholarships will
  support students from families with no engineering graduates, and a hardship fund helps
  students finish their studies when life gets in the way. Applications for next year open in
  June; the student office answers questions by mail and in person every weekday.</p>
  <p><a href="https://www.example.edu/engineering/scholarships">How scholarships work</a></p>
</div>

<div class="story">
  <h2>Coming up</h2>
  <table class="events" role="presentation">
    <tr><th>Date</th><th>Event</th><th>Where</th></tr>
    <tr><td>12 April</td><td>Open Day: laboratories and talks</td><td>Innovation Hall</td></tr>
    <tr><td>19 April</td><td>Public lecture: engineering for ageing cities</td>
      <td>Lecture Theatre A</td></tr>
    <tr><td>3 May</td><td>Alumni evening and career mentoring</td><td>Senior Common Room</td></tr>
    <tr><td>17 May</td><td>Final-year project exhibition</td><td>Main Concourse</td></tr>
  </table>
  <p><a class="button" href="https://www.example.edu/engineering/events">See all events</a></p>
</div>

<div class="story">
  <h2>From the Dean</h2>
  <p>"Engineering is a team sport. Every prize this spring began with a student who asked a
  question in a laboratory late at night, and a technician or a teacher who stayed to help
  answer it. Thank you for being part of this community."</p>
  <img class="portrait" src="https://www.example.edu/engineering/images/dean.jpg"
       alt="Portrait of the Dean" width="120">
</div>

<p>We hope to see you on Open Day,<br>
The Faculty of Engineering communications team</p>
"""


def demo_setup_campaigns(unit: SenderUnit, user: AbstractBaseUser) -> None:
    """Give `unit` a signing key for its From domain, a sender identity, the demo layout and a
    draft of the demo newsletter, once (idempotent: later runs keep what exists)."""
    from campaigns.models import Campaign, Layout, SenderIdentity
    from campaigns.services.authoring import campaign_create, identity_create, layout_create
    from consent.models import DMType
    from consent.services import dm_type_create
    from mlm.models import SendingDomain
    from mlm.services import sending_domain_create
    from recipients.models import Audience, RecipientList

    domain = DEMO_IDENTITY_EMAIL.rpartition("@")[2]
    if SendingDomain.objects.active_for(domain) is None:
        sending_domain_create(domain=domain, selector=DEMO_DKIM_SELECTOR, by=None)
    identity = SenderIdentity.objects.for_unit(unit).filter(email=DEMO_IDENTITY_EMAIL).first()
    if identity is None:
        identity = identity_create(
            unit=unit, name=unit.name, email=DEMO_IDENTITY_EMAIL, reply_to="", by=user
        )
    layout = Layout.objects.for_unit(unit).filter(name=DEMO_LAYOUT_NAME).first()
    if layout is None:
        layout = layout_create(unit=unit, name=DEMO_LAYOUT_NAME, html=DEMO_LAYOUT, by=user)
    if Campaign.objects.for_unit(unit).filter(name=DEMO_CAMPAIGN_NAME).exists():
        return
    dm_types = DMType.objects.for_unit(unit).filter(archived_at__isnull=True)
    dm_type = dm_types.filter(key="newsletter").first() or dm_types.first()
    if dm_type is None:
        dm_type = dm_type_create(
            unit=unit,
            key="newsletter",
            name="Newsletter",
            notice_text="News of the Faculty: research, events and people, about once a month.",
            internal_default=True,
            by=user,
        )
    # The newsletter goes to internal recipients by default (no withdrawal, I1), so the
    # internal lists give the draft recipients who may be mailed at once.
    audience = Audience.INTERNAL if dm_type.internal_default else Audience.EXTERNAL
    lists = RecipientList.objects.for_unit(unit).filter(audience=audience)
    campaign_create(
        unit=unit,
        by=user,
        name=DEMO_CAMPAIGN_NAME,
        dm_type=dm_type,
        audience=audience,
        lists=list(lists),
        identity=identity,
        subject=DEMO_SUBJECT,
        html_body=DEMO_BODY,
        layout=layout,
    )
