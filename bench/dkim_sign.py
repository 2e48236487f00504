"""DKIM-sign a newsletter message with an RSA-2048 key: our signer (mlm.mail.dkim: RSA in OpenSSL,
canonicalisation with `bytes` methods) against dkimpy (pure-Python RSA), in one process, and
OpenSSL's RSA step alone (the floor).

The message is a ~25 kB multipart/alternative made by mlm.mail.build, signed relaxed/relaxed over
the headers dispatch signs. The two are interleaved in rounds, so a noisy machine slows them
alike; CPU time of this process. The signatures are checked to be byte-identical first.
Last line: `dkim: <ms> ms per signature (<ms> ms of it OpenSSL's RSA), <ms> ms pure dkimpy`.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlm.settings")
# Development mode only for its generated keys: nothing here is served or stored.
os.environ.setdefault("DEBUG", "1")

import django

django.setup()

import dkim  # noqa: E402

from mlm.mail.build import MessageBuilder  # noqa: E402
from mlm.mail.dkim import DKIMSigner, generate_key_pair  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "10"))
OURS_PER_ROUND, PURE_PER_ROUND = 40, 4


def sample_message() -> bytes:
    builder = MessageBuilder(
        from_addr="news@eng.example.edu",
        from_name="工程學院 Faculty of Engineering",
        subject="工程學院通訊 Engineering News — 開放日 Open Day 2025",
        list_id=("Engineering News", "newsletter.eng.lists.example.edu"),
        feedback_id="c42:engineering:newsletter:mlm",
        message_id_domain="eng.example.edu",
    )
    paragraph = (
        "The faculty opened a new robotics laboratory this spring, with space for 40 students "
        "and industrial partners. 歡迎蒞臨參觀實驗室。\n"
    )
    html = "".join(
        f'    <tr><td style="padding:16px;font-family:Arial;color:#333">{paragraph}'
        f'<a href="https://mlm.example.edu/r/c/0001/{i}">Read more</a></td></tr>\n'
        for i in range(60)
    )
    return builder.build(
        to_addr="chan.taiman@example.org",
        to_name="陳大文",
        text=paragraph * 30,
        html=f"<html><body><table>{html}</table></body></html>",
        unsubscribe_url="https://mlm.example.edu/r/one-click/AbCdEf0123456789",
    ).raw


def main() -> None:
    pem, _ = generate_key_pair()
    message = sample_message()
    signer = DKIMSigner(domain="eng.example.edu", selector="mlm1", private_key_pem=pem)
    include = signer.include_headers(name for name, _ in dkim.rfc822_parse(message)[0])

    def pure() -> bytes:
        return dkim.sign(
            message,
            b"mlm1",
            b"eng.example.edu",
            pem,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=include,
        )

    expected = pure()
    now = int(re.search(rb"; t=(\d+);", expected)[1])
    assert signer.signature(message, now=now) == expected, "signatures differ"
    print(f"message: {len(message):,} bytes, h={b':'.join(include).decode()}")

    signer.signature(message)  # warm up both
    pure()
    ours_seconds = pure_seconds = rsa_seconds = 0.0
    for _ in range(ROUNDS):
        t0 = time.process_time()
        for _ in range(OURS_PER_ROUND):
            signer.signature(message)
        ours_seconds += time.process_time() - t0
        t1 = time.process_time()
        for _ in range(PURE_PER_ROUND):
            pure()
        pure_seconds += time.process_time() - t1
        t2 = time.process_time()
        for _ in range(OURS_PER_ROUND):
            signer.key.sign(message[:200], padding.PKCS1v15(), hashes.SHA256())
        rsa_seconds += time.process_time() - t2
    ours_ms = ours_seconds / (ROUNDS * OURS_PER_ROUND) * 1000
    pure_ms = pure_seconds / (ROUNDS * PURE_PER_ROUND) * 1000
    rsa_ms = rsa_seconds / (ROUNDS * OURS_PER_ROUND) * 1000
    print(f"byte-identical signatures; {pure_ms / ours_ms:.1f}x faster than dkimpy")
    print(
        f"dkim: {ours_ms:.2f} ms per signature ({rsa_ms:.2f} ms of it OpenSSL's RSA), "
        f"{pure_ms:.2f} ms pure dkimpy"
    )


if __name__ == "__main__":
    main()
