"""Build 5,000 personalised newsletter messages (RFC 5322 bytes) three ways, in one process.

- mlm.mail.build.MessageBuilder: the invariant headers and MIME skeleton prepared once per
  campaign, only To, Date, Message-ID, List-Unsubscribe and the two bodies per message;
- Django's EmailMultiAlternatives, `.message().as_bytes(linesep="\\r\\n")` as the SMTP backend
  sends it (the baseline);
- the standard library's EmailMessage with policy.SMTP (for the record).

The same pre-rendered, personalised bodies go to all three (rendering is bench/render.py's
business): a bilingual English/Chinese newsletter of about 11 kB of HTML and 5 kB of text, a
Chinese subject, Chinese and English names. Interleaved in slices so a noisy machine slows them
alike; CPU time of this process. Every message ours makes is parsed back once to check it.
Last line: `mailbuild: <us> µs per message (<x> faster than EmailMultiAlternatives)`.
"""

from __future__ import annotations

import os
import sys
import time
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlm.settings")
# Development mode only for its generated keys: nothing here is served or stored.
os.environ.setdefault("DEBUG", "1")

import django

django.setup()

from django.core.mail import EmailMultiAlternatives  # noqa: E402

from mlm.mail.build import MessageBuilder  # noqa: E402

MESSAGES = int(os.environ.get("BENCH_MESSAGES", "5000"))
SLICE = 250
SUBJECT = "工程學院通訊 Engineering News — 開放日 Open Day 2025"
FROM_NAME, FROM_ADDR = "工程學院 Faculty of Engineering", "news@eng.example.edu"
SITE = "https://mlm.example.edu"
NAMES = ["陳大文", "Alice Wong", "李小明", "Ng Ka Ho", "張美玲", "O'Brien, Siobhán"]

ARTICLE = (
    '<tr><td style="padding:16px 24px;font-family:Arial,sans-serif;font-size:15px;'
    'line-height:1.5;color:#333333">'
    '<h2 style="margin:0 0 8px;font-size:18px;color:#003366">{title}</h2>'
    '<p style="margin:0 0 12px">{body}</p>'
    '<a href="{site}/r/c/{code}/{n}" style="color:#0066cc;text-decoration:underline">'
    "Read more 了解更多</a></td></tr>\n"
)
TEXT_ARTICLE = "{title}\n\n{body}\n\nRead more 了解更多: {site}/r/c/{code}/{n}\n\n"
STORIES = [
    (
        "Open Day 開放日",
        "Join us on Saturday for talks, laboratory tours and a chance to meet our students. "
        "歡迎蒞臨參觀實驗室，與教授及同學交流。",  # noqa: RUF001
    ),
    (
        "New robotics laboratory",
        "The faculty opened a new robotics laboratory this spring, with space for 40 "
        "students and industrial partners from Hong Kong and the Greater Bay Area.",
    ),
    (
        "校友活動 Alumni evening",
        "Alumni are warmly invited to an evening reception on 12 June. 請於五月三十一日前登記。",
    ),
    (
        "Scholarships",
        "Applications for the 2025 scholarships close at the end of the month; see the "
        "website for the criteria and the form.",
    ),
]


def bodies(n: int) -> tuple[str, str, str, str]:
    """(name, address, text, html) of the n-th recipient: personalised, pre-rendered."""
    name = NAMES[n % len(NAMES)]
    code = f"{n:08d}deadbeefcafef00d"
    rows = "".join(
        ARTICLE.format(title=t, body=b, site=SITE, code=code, n=i)
        for i, (t, b) in enumerate(STORIES * 5)
    )
    html = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Engineering News'
        '</title></head><body style="margin:0;background:#f4f4f4">\n'
        '<table role="presentation" width="100%" cellpadding="0" cellspacing="0" '
        'style="max-width:640px;margin:0 auto;background:#ffffff">\n'
        f'<tr><td style="padding:24px;font-family:Arial,sans-serif;font-size:16px">Dear {name},'
        "</td></tr>\n"
        f"{rows}"
        '<tr><td style="padding:24px;font-family:Arial,sans-serif;font-size:12px;color:#777">'
        "Faculty of Engineering, Example University, 1 University Road, Hong Kong<br>"
        f'<a href="{SITE}/p/{code}" style="color:#777">Preferences 訂閱設定</a> · '
        f'<a href="{SITE}/u/{code}" style="color:#777">Unsubscribe 取消訂閱</a></td></tr>\n'
        "</table></body></html>\n"
    )
    text = (
        f"Dear {name},\n\n"
        + "".join(
            TEXT_ARTICLE.format(title=t, body=b, site=SITE, code=code, n=i)
            for i, (t, b) in enumerate(STORIES * 5)
        )
        + "Faculty of Engineering, Example University, 1 University Road, Hong Kong\n"
        f"Preferences 訂閱設定: {SITE}/p/{code}\nUnsubscribe 取消訂閱: {SITE}/u/{code}\n"
    )
    return name, f"reader{n}@example.org", text, html


HEADERS = {
    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    "List-Id": "Engineering News <newsletter.eng.lists.example.edu>",
    "Feedback-ID": "c42:engineering:newsletter:mlm",
}


def ours(builder: MessageBuilder, people) -> list[bytes]:
    return [
        builder.build(
            to_addr=addr,
            to_name=name,
            text=text,
            html=html,
            unsubscribe_url=f"{SITE}/r/one-click/{addr}",
            message_id=builder.make_message_id(f"d{i}"),
        ).raw
        for i, (name, addr, text, html) in people
    ]


def django_baseline(people) -> list[bytes]:
    out = []
    for i, (name, addr, text, html) in people:
        message = EmailMultiAlternatives(
            subject=SUBJECT,
            body=text,
            from_email=f"{FROM_NAME} <{FROM_ADDR}>",
            to=[f"{name} <{addr}>"] if "," not in name else [f'"{name}" <{addr}>'],
            reply_to=["office@eng.example.edu"],
            headers={
                **HEADERS,
                "List-Unsubscribe": f"<{SITE}/r/one-click/{addr}>",
                "Message-ID": f"<d{i}@eng.example.edu>",
            },
        )
        message.attach_alternative(html, "text/html")
        out.append(message.message().as_bytes(linesep="\r\n"))
    return out


def stdlib_baseline(people) -> list[bytes]:
    out = []
    for i, (name, addr, text, html) in people:
        message = EmailMessage(policy=policy.SMTP)
        message["From"] = Address(FROM_NAME, addr_spec=FROM_ADDR)
        message["To"] = Address(name, addr_spec=addr)
        message["Reply-To"] = "office@eng.example.edu"
        message["Subject"] = SUBJECT
        message["Message-ID"] = f"<d{i}@eng.example.edu>"
        message["List-Unsubscribe"] = f"<{SITE}/r/one-click/{addr}>"
        for key, value in HEADERS.items():
            message[key] = value
        message.set_content(text)
        message.add_alternative(html, subtype="html")
        out.append(message.as_bytes())
    return out


def main() -> None:
    people = [(i, bodies(i)) for i in range(MESSAGES)]
    started = time.process_time()
    builder = MessageBuilder(
        from_addr=FROM_ADDR,
        from_name=FROM_NAME,
        subject=SUBJECT,
        reply_to=[("", "office@eng.example.edu")],
        list_id=("Engineering News", "newsletter.eng.lists.example.edu"),
        feedback_id="c42:engineering:newsletter:mlm",
        message_id_domain="eng.example.edu",
    )
    prepare = time.process_time() - started

    sample = ours(builder, people[:1])[0]
    parsed = BytesParser(policy=policy.default).parsebytes(sample)
    assert parsed["Subject"] == SUBJECT and not parsed.defects
    assert parsed.get_body(("html",)).get_content().replace("\r\n", "\n") == people[0][1][3]
    print(
        f"sample: {len(sample):,} bytes ours, "
        f"{len(django_baseline(people[:1])[0]):,} bytes EmailMultiAlternatives; "
        f"HTML {len(people[0][1][3].encode()):,} bytes, text {len(people[0][1][2].encode()):,}"
    )
    print(f"builder prepared once per campaign: {prepare * 1e6:.0f} µs")

    for run in (ours, django_baseline, stdlib_baseline):  # warm up
        run(*((builder, people[:50]) if run is ours else (people[:50],)))
    seconds = {"ours": 0.0, "django": 0.0, "stdlib": 0.0}
    stdlib_count = 0
    for start in range(0, len(people), SLICE):
        batch = people[start : start + SLICE]
        t0 = time.process_time()
        ours(builder, batch)
        t1 = time.process_time()
        django_baseline(batch)
        t2 = time.process_time()
        seconds["ours"] += t1 - t0
        seconds["django"] += t2 - t1
        if start % (SLICE * 4) == 0:  # the slowest: a quarter of the slices is enough
            t3 = time.process_time()
            stdlib_baseline(batch)
            seconds["stdlib"] += time.process_time() - t3
            stdlib_count += len(batch)

    per = {
        "ours": seconds["ours"] / len(people) * 1e6,
        "django": seconds["django"] / len(people) * 1e6,
        "stdlib": seconds["stdlib"] / stdlib_count * 1e6,
    }
    print(f"EmailMultiAlternatives: {per['django']:.0f} µs per message")
    print(f"stdlib EmailMessage (policy.SMTP): {per['stdlib']:.0f} µs per message")
    print(f"MessageBuilder: {per['ours']:.0f} µs per message over {len(people):,} messages")
    print(
        f"mailbuild: {per['ours']:.0f} µs per message "
        f"({per['django'] / per['ours']:.1f}x faster than EmailMultiAlternatives)"
    )


if __name__ == "__main__":
    main()
