"""Hostile checks of the operator console in headless Chromium (tests/hostile_console_browser.rs).

Usage: hostile.py CHECK, with CHECK one of
  rebind   a page of a foreign host name resolved to the admin listener (DNS rebinding) calls the
           API with wrong keys; the operator must not be locked out.
  signout  after Sign out, nothing of the session's data may stay in the page.

Environment: TOKENGATE_CONSOLE_URL (http://127.0.0.1:A/ui/), TOKENGATE_ADMIN_KEY,
TOKENGATE_PROJECT_ID (a project whose one member is the only identity, TOKENGATE_IDENTITY_NAME,
with Token Auth trusting 203.0.113.7), optional TOKENGATE_CHROMIUM, TOKENGATE_CHROMEDRIVER.
Exits 0 when the console holds, 1 with the finding on stdout otherwise. Every wait is bounded.
"""

import json
import os
import re
import sys
import time
import urllib.error
import urllib.request

os.environ["SE_OFFLINE"] = "true"

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CONSOLE = os.environ["TOKENGATE_CONSOLE_URL"]
ADMIN_KEY = os.environ["TOKENGATE_ADMIN_KEY"]
PROJECT = os.environ.get("TOKENGATE_PROJECT_ID", "")
NAME = os.environ.get("TOKENGATE_IDENTITY_NAME", "")
CHROMIUM = os.environ.get("TOKENGATE_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("TOKENGATE_CHROMEDRIVER", "/usr/bin/chromedriver")
ORIGIN = re.match(r"^(https?://[^/]+)", CONSOLE).group(1)
PORT = ORIGIN.rsplit(":", 1)[1]
WAIT = 20


def driver():
    opts = Options()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,800",
                "--disable-gpu", "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--lang=en-US", "--host-resolver-rules=MAP rebind.test 127.0.0.1"):
        opts.add_argument(arg)
    d = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    d.set_page_load_timeout(WAIT)
    d.set_script_timeout(WAIT)
    return d


def wait(d, cond, what):
    return WebDriverWait(d, WAIT, poll_frequency=0.1).until(lambda x: cond(x), f"timed out waiting for {what}")


def operator_call():
    """The operator's own API call, outside the browser, from the same address."""
    req = urllib.request.Request(ORIGIN + "/api/v1/identities?offset=0&limit=1")
    req.add_header("Authorization", "Bearer " + ADMIN_KEY)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def sign_in(d):
    d.get(CONSOLE)
    field = wait(d, lambda x: x.find_element(By.ID, "credential"), "the credential field")
    field.send_keys(ADMIN_KEY)
    field.send_keys(Keys.ENTER)
    wait(d, lambda x: x.find_elements(By.CSS_SELECTOR, "#identity-list li.card"), "the identities list")


def click(d, xpath):
    wait(d, lambda x: [b for b in x.find_elements(By.XPATH, xpath) if b.is_displayed()], xpath)[0].click()


def rebind(d):
    # The attacker's page, served (by the gateway itself here) under a name it re-points at 127.0.0.1:
    # same-origin with the listener to the browser. An http:// page of a name is not a secure
    # context, so Chromium sends no Sec-Fetch-Site; a same-origin GET sends no Origin either.
    d.get(f"http://rebind.test:{PORT}/ui/")
    statuses = d.execute_async_script("""
        const done = arguments[0];
        (async () => {
          const out = [];
          for (let i = 0; i < 4; i++) {
            const r = await fetch('/api/v1/identities', {headers: {Authorization: 'Bearer guess-' + i}});
            out.push(r.status);
          }
          done(out);
        })().catch((e) => done(String(e)));""")
    print("the rebound page's API calls answered", statuses)
    status, body = operator_call()
    problems = []
    if statuses != [403] * 4:
        problems.append(f"a page of the foreign name rebind.test had its API calls judged on their "
                        f"credentials ({statuses}), not refused with 403")
    if status != 200:
        problems.append(f"the operator is locked out by that page: {status} {body}")
    return problems


def signout(d):
    sign_in(d)
    click(d, "//section[@id='view-identities']//button[normalize-space()='Manage']")
    wait(d, lambda x: x.find_element(By.ID, "identity-id").text, "the identity screen")
    identity_id = d.find_element(By.ID, "identity-id").text
    click(d, "//nav//button[normalize-space()='Memberships']")
    project = wait(d, lambda x: x.find_element(By.ID, "project-id"), "the project field")
    project.send_keys(PROJECT)
    project.send_keys(Keys.ENTER)
    wait(d, lambda x: x.find_elements(By.CSS_SELECTOR, "#membership-list li.card"), "the members")
    click(d, "//button[@id='sign-out']")
    wait(d, lambda x: not x.find_element(By.ID, "view-signin").get_attribute("hidden"), "the sign-in screen")
    left = d.execute_script("""
        const found = [];
        for (const el of document.querySelectorAll('*')) {
          if (el.children.length === 0 && el.textContent) found.push('#' + el.id + ' text: ' + el.textContent);
          if ('value' in el && typeof el.value === 'string' && el.value && el.type !== 'checkbox'
              && el.tagName !== 'OPTION' && el.tagName !== 'SELECT' && el.tagName !== 'BUTTON')
            found.push('#' + el.id + ' value: ' + el.value);
        }
        return found;""")
    hits = [x for x in left if identity_id in x or PROJECT in x or NAME in x or "203.0.113." in x]
    return [f"after Sign out the page still holds the session's data: {h}" for h in hits]


def main():
    check = sys.argv[1]
    d = driver()
    try:
        problems = {"rebind": rebind, "signout": signout}[check](d)
    finally:
        d.quit()
    for p in problems:
        print("FINDING:", p)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
