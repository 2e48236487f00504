"""`make run` on a clean copy: installs, migrates, prints a login, serves the login page in time."""

from __future__ import annotations

import re
import subprocess
import time
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar

from tests.system.make_run import free_port, fresh_clone, make_run, make_run_env, wait_for_page


def test_make_run_serves_the_login_page_and_logs_the_demo_admin_in():
    with fresh_clone() as workdir:
        _first_and_second_run(workdir)


def _first_and_second_run(workdir) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with make_run(workdir, port) as output:
        installed_at, _ = output.wait_for(r"Installed\. Preparing", timeout=600)
        _, login = output.wait_for(r"user name (\S+)\s+password (\S+)", timeout=180)
        running_at, _ = output.wait_for(r"MLM is running at", timeout=120)
        jar = CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        page = opener.open(f"{base}/accounts/login/", timeout=10).read().decode()
        served_at = time.monotonic()
        assert served_at - installed_at < 60, f"login page after {served_at - installed_at:.1f} s"
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        form = urllib.parse.urlencode(
            {
                "username": login.group(1),
                "password": login.group(2),
                "csrfmiddlewaretoken": token,
            }
        ).encode()
        request = urllib.request.Request(
            f"{base}/accounts/login/", data=form, headers={"Referer": f"{base}/accounts/login/"}
        )
        landing = opener.open(request, timeout=10)
        body = landing.read().decode()
        assert landing.url.rstrip("/") == base, landing.url  # two demo units: the chooser
        assert "Faculty of Engineering" in body and "Alumni Relations Office" in body
        dashboard = opener.open(f"{base}/units/engineering/", timeout=10).read().decode()
        assert "Worker" in dashboard

        # The background worker of the embedded default consumes tasks (embedded Redis).
        def worker_seen() -> bool:
            answer = opener.open(f"{base}/health/", timeout=10).read().decode()
            return '"worker_seen_seconds_ago": null' not in answer

        deadline = time.monotonic() + 60
        while not worker_seen():
            assert time.monotonic() < deadline, output.text()[-3000:]
            time.sleep(0.5)
        assert running_at >= installed_at
        # The login block is the last thing printed: nothing scrolls it away.
        assert "MLM is running at" in "\n".join(output.text().splitlines()[-8:])
    assert "MLM stopped." in output.text()

    # A second run reuses what exists: no new install, the same demo login, and the login
    # page within 15 s.
    again = subprocess.run(
        ["make", "-n", "run"], cwd=workdir, env=make_run_env(), capture_output=True, text=True,
        check=True,
    )  # fmt: skip
    assert "pip install" not in again.stdout
    with make_run(workdir, port) as output:
        assert wait_for_page(f"{base}/accounts/login/", timeout=15) < 15
        _, reused = output.wait_for(r"\(reused\): user name (\S+)\s+password (\S+)", timeout=30)
        assert reused.group(2) == login.group(2)
