"""The operator console walked through in headless Chromium, as an operator would.

Run by tests/console.rs with these environment variables:
  TOKENGATE_CONSOLE_URL   the console, e.g. http://127.0.0.1:A/ui/
  TOKENGATE_PROXY_URL     the gateway's proxy listener, e.g. http://127.0.0.1:P
  TOKENGATE_ADMIN_KEY     the admin key
  TOKENGATE_PROJECT_ID    a project where only deploy-bot is a member yet
  TOKENGATE_OPERATOR_TOKEN  an access token of deploy-bot, an identity with org role admin
  TOKENGATE_SCREENSHOTS   where to save one PNG per main screen (1280x800)
  TOKENGATE_RESULT        where to write what the walk created, as JSON, for the Rust side to check
  TOKENGATE_CHROMIUM, TOKENGATE_CHROMEDRIVER  optional; default /usr/bin/chromium, /usr/bin/chromedriver

Controls are found by their label, role or text. Every wait is bounded; any failure raises and
exits non-zero with the phase it happened in.
"""

import json
import os
import re
import sys
import urllib.error
import urllib.request

# Selenium Manager must never download a browser or driver: the paths below are explicit, and
# offline mode turns any attempt into an error instead.
os.environ["SE_OFFLINE"] = "true"

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException, TimeoutException  # noqa: E402
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

CONSOLE = os.environ["TOKENGATE_CONSOLE_URL"]
PROXY = os.environ["TOKENGATE_PROXY_URL"].rstrip("/")
ADMIN_KEY = os.environ["TOKENGATE_ADMIN_KEY"]
PROJECT = os.environ["TOKENGATE_PROJECT_ID"]
OPERATOR_TOKEN = os.environ["TOKENGATE_OPERATOR_TOKEN"]
SHOTS = os.environ["TOKENGATE_SCREENSHOTS"]
RESULT = os.environ["TOKENGATE_RESULT"]
CHROMIUM = os.environ.get("TOKENGATE_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("TOKENGATE_CHROMEDRIVER", "/usr/bin/chromedriver")

WAIT = 20  # seconds for any one thing to appear
IDENTITY = "console-walker"
TOKEN_NAME = "walk-laptop"
RENAMED = "walk-build-server"
TOKEN_SHAPE = re.compile(r"^tgat_[A-Za-z0-9_-]{91}$")

phase = "start"


def step(name):
    global phase
    phase = name
    print(f"-- {name}", flush=True)


def check(cond, message):
    if not cond:
        raise AssertionError(message)


# ------------------------------------------------------------------ browser

def make_driver():
    opts = Options()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,800",
                "--disable-gpu", "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--hide-scrollbars", "--force-device-scale-factor=1", "--lang=en-US"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    # The window's size includes no browser chrome in headless mode on every version; the emulated
    # viewport is exact, so screenshots are 1280x800 and the 320 px checks measure 320 px.
    set_viewport(driver, 1280, 800)
    driver.set_page_load_timeout(WAIT)
    driver.set_script_timeout(WAIT)
    origin = re.match(r"^(https?://[^/]+)", CONSOLE).group(1)
    driver.execute_cdp_cmd("Browser.grantPermissions", {
        "origin": origin, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]})
    return driver


def set_viewport(driver, width, height):
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})


def wait(driver, cond, what, timeout=WAIT):
    try:
        # The console re-renders lists after each change: an element found a moment ago may be gone.
        return WebDriverWait(driver, timeout, poll_frequency=0.1,
                             ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)
                             ).until(lambda d: cond(d))
    except TimeoutException:
        raise AssertionError(f"timed out after {timeout}s waiting for {what}") from None


def view(driver):
    """The screen being shown."""
    return wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, "section.view:not([hidden])"), "a visible screen")


def xq(text):
    """An XPath string literal for text (which may hold either quote)."""
    if "'" not in text:
        return f"'{text}'"
    return "concat('" + "', \"'\", '".join(text.split("'")) + "')"


def field(driver, label, scope=None):
    """The control a visible <label> with this text names."""
    def find(d):
        root = scope or view(d)
        for lab in root.find_elements(By.XPATH, f".//label[normalize-space()={xq(label)}]"):
            if lab.is_displayed():
                return d.find_element(By.ID, lab.get_attribute("for"))
        return False
    return wait(driver, find, f"a field labelled {label!r}")


def button(driver, text, scope=None):
    """A visible, enabled button with this text or accessible name."""
    def find(d):
        root = scope or d
        for b in root.find_elements(By.XPATH, f".//button[normalize-space()={xq(text)} or @aria-label={xq(text)}]"):
            if b.is_displayed() and b.is_enabled():
                return b
        return False
    return wait(driver, find, f"a button {text!r}")


def type_into(el, text):
    """Replaces the field's text by keystrokes, so the page sees input events as it would from a person."""
    el.send_keys(Keys.CONTROL, "a")
    el.send_keys(Keys.BACKSPACE)
    if text:
        el.send_keys(text)


def heading(driver, text):
    return wait(driver, lambda d: any(h.is_displayed() and h.text.strip() == text
                                      for h in d.find_elements(By.TAG_NAME, "h1")), f"the heading {text!r}")


def announced(driver, text):
    return wait(driver, lambda d: text in d.find_element(By.ID, "announce").text, f"the status message {text!r}")


def field_error(driver, control):
    slot = driver.find_element(By.ID, control.get_attribute("id") + "-error")
    wait(driver, lambda d: slot.is_displayed() and slot.text.strip() != "", f"an error next to {control.get_attribute('id')}")
    check(control.get_attribute("aria-invalid") == "true", f"{control.get_attribute('id')} is not marked invalid")
    return slot.text.strip()


def card(driver, text):
    """The visible list card whose heading holds this text."""
    def find(d):
        for li in d.find_elements(By.CSS_SELECTOR, "section.view:not([hidden]) li.card"):
            h3 = li.find_elements(By.TAG_NAME, "h3")
            if h3 and text in h3[0].text and li.is_displayed():
                return li
        return False
    return wait(driver, find, f"a card for {text!r}")


def screenshot(driver, name, anchor=None):
    """Saves the viewport, scrolled to the top or to the heading with the anchor text."""
    if anchor:
        target = driver.find_element(By.XPATH, f"//*[self::h1 or self::h2][starts-with(normalize-space(), {xq(anchor)})]")
        driver.execute_script("arguments[0].scrollIntoView({block: 'start'})", target)
    else:
        driver.execute_script("window.scrollTo(0, 0)")
    check(driver.execute_script("return [window.innerWidth, window.innerHeight]") == [1280, 800], "not 1280x800")
    path = os.path.join(SHOTS, name + ".png")
    check(driver.save_screenshot(path), f"could not save {path}")


def fits_320(driver, screen):
    """At 320 CSS px wide the screen scrolls only vertically."""
    set_viewport(driver, 320, 800)
    try:
        wait(driver, lambda d: d.execute_script("return window.innerWidth") == 320, "a 320 px viewport")
        width = driver.execute_script("return document.documentElement.scrollWidth")
        check(width <= 320, f"{screen} is {width} px wide at 320 px: it scrolls horizontally")
    finally:
        set_viewport(driver, 1280, 800)
    wait(driver, lambda d: d.execute_script("return window.innerWidth") == 1280, "the 1280 px viewport back")


def console_errors(driver, allowed_statuses=()):
    """Browser console errors since the last call, minus resource failures with an expected status."""
    errors = []
    for entry in driver.get_log("browser"):
        if entry.get("level") != "SEVERE" and "Content Security Policy" not in entry.get("message", ""):
            continue
        msg = entry.get("message", "")
        m = re.search(r"Failed to load resource: the server responded with a status of (\d+)", msg)
        if m and int(m.group(1)) in allowed_statuses:
            continue
        errors.append(msg)
    return errors


# ------------------------------------------------------------------ the gateway, without the browser

def http(method, url, token=None, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, method=method, data=data)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=WAIT) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def through_gateway(token):
    return http("GET", f"{PROXY}/api/v3/secrets/raw?workspaceId={PROJECT}&environment=dev", token)


# ------------------------------------------------------------------ the walk

def check_headers():
    step("the console's response headers")
    for asset in ("", "console.js", "api.js", "dom.js", "forms.js", "ips.js", "state.js", "identities.js", "tokens.js",
                  "memberships.js", "status.js", "console.css", "favicon.svg"):
        status, headers, _ = http("GET", CONSOLE + asset)
        headers = {k.lower(): v for k, v in headers.items()}
        check(status == 200, f"GET {CONSOLE + asset}: {status}")
        csp = headers.get("content-security-policy", "")
        for directive in ("default-src 'none'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'",
                          "form-action 'none'"):
            check(directive in csp, f"{asset or 'index'}: CSP {csp!r} lacks {directive!r}")
        check(headers.get("x-frame-options", "").upper() == "DENY", f"{asset}: X-Frame-Options {headers}")
        check(headers.get("x-content-type-options", "") == "nosniff", f"{asset}: X-Content-Type-Options {headers}")
        check("no-store" in headers.get("cache-control", ""), f"{asset}: Cache-Control {headers}")


def wrong_key(driver):
    step("the sign-in screen")
    driver.get(CONSOLE)
    heading(driver, "Sign in")
    screenshot(driver, "sign-in")
    fits_320(driver, "sign-in")
    cred = field(driver, "Admin key or access token")
    step("the keyboard reaches the sign-in button, with a visible focus ring")
    cred.click()
    cred.send_keys(Keys.TAB)
    focused = driver.switch_to.active_element
    check(focused.tag_name == "button" and focused.text == "Sign in", f"Tab went to {focused.tag_name} {focused.text!r}")
    ring = driver.execute_script("const s = getComputedStyle(document.activeElement); return [s.outlineStyle, s.outlineWidth]")
    check(ring[0] != "none" and ring[1] != "0px", f"no visible focus on the button: {ring}")
    step("a wrong key is refused at sign-in")
    type_into(cred, "not-the-admin-key-000000000000")
    button(driver, "Sign in").click()
    message = field_error(driver, cred)
    print(f"   refused with: {message}")
    check(driver.find_element(By.ID, "nav").is_displayed() is False, "the navigation shows after a refused sign-in")
    # The refused fetch is a 401 the browser logs as a failed resource; nothing else may be logged.
    errors = console_errors(driver, allowed_statuses=(401,))
    check(not errors, f"console errors while signing in with a wrong key: {errors}")


def sign_in(driver):
    step("sign in with the admin key")
    cred = field(driver, "Admin key or access token")
    type_into(cred, ADMIN_KEY)
    button(driver, "Sign in").click()
    heading(driver, "Identities")
    check(driver.execute_script("return document.getElementById('credential').value") == "",
          "the credential stayed in the sign-in field")
    for store in ("localStorage", "sessionStorage"):
        check(driver.execute_script(f"return window.{store}.length") == 0, f"{store} is not empty")
    check(driver.execute_script("return document.cookie") == "", "a cookie was set")
    check(ADMIN_KEY not in driver.current_url, "the key is in the URL")
    card(driver, "ci-runner")  # made by the Rust side, so the list has something to show


def create_identity(driver):
    step("create an identity")
    type_into(field(driver, "Name"), IDENTITY)
    org = field(driver, "Organization id")
    check(org.get_attribute("value"), "the organization id was not prefilled from the list")
    Select(field(driver, "Org role")).select_by_visible_text("member")
    button(driver, "Create identity").click()
    heading(driver, f"Identity {IDENTITY}")
    announced(driver, f"Created identity {IDENTITY}")
    return driver.find_element(By.ID, "identity-id").text.strip()


def attach_token_auth(driver):
    step("attach Token Auth")
    ips = field(driver, "Trusted IPs (one address or CIDR block per line)")
    type_into(ips, "127.0.0.1/32\n10.0.0.300")
    message = field_error(driver, ips)  # checked as typed, before any request
    check("10.0.0.300" in message, f"the IP error does not name the bad entry: {message!r}")
    type_into(ips, "127.0.0.1/32\n::1")
    wait(driver, lambda d: ips.get_attribute("aria-invalid") is None, "the IP error to clear")
    ttl = field(driver, "Access token TTL (seconds, 0 = none)")
    type_into(ttl, "90000")
    type_into(field(driver, "Access token max TTL (seconds, 0 = no cap)"), "86400")
    type_into(field(driver, "Number of uses limit (0 = unlimited)"), "5")
    errors = console_errors(driver)
    check(not errors, f"console errors before attaching Token Auth: {errors}")
    button(driver, "Attach Token Auth").click()
    # The API refuses TTL > MaxTTL with a 422 naming accessTokenTTL: shown next to that field.
    message = field_error(driver, ttl)
    check("accessTokenTTL" in message, f"unexpected refusal: {message!r}")
    check(button(driver, "Attach Token Auth"), "the form changed after a refusal")
    errors = console_errors(driver, allowed_statuses=(422,))
    check(not errors, f"console errors while attaching Token Auth: {errors}")
    type_into(ttl, "3600")
    button(driver, "Attach Token Auth").click()
    announced(driver, "Attached Token Auth.")
    button(driver, "Save Token Auth")
    check(ttl.get_attribute("aria-invalid") is None, "the TTL field is still marked invalid")
    screenshot(driver, "token-auth", anchor="Token Auth")
    fits_320(driver, "identity and Token Auth")


def create_token(driver):
    step("create a token and copy its secret")
    button(driver, "Tokens", view(driver)).click()
    heading(driver, f"Tokens of {IDENTITY}")
    type_into(field(driver, "Token name"), TOKEN_NAME)
    button(driver, "Create token").click()
    dialog = wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, "dialog[open]"), "the show-once dialog")
    check("You will not see it again" in dialog.text, f"no warning in the dialog: {dialog.text!r}")
    secret = dialog.find_element(By.TAG_NAME, "code").text.strip()
    check(TOKEN_SHAPE.match(secret), f"the dialog does not show a token: {secret[:12]}...")
    button(driver, "Copy", dialog).click()
    wait(driver, lambda d: "Copied" in dialog.text, "the copy confirmation")
    pasted = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "navigator.clipboard.readText().then(done, (e) => done('ERROR ' + e));")
    check(pasted == secret, f"the clipboard holds {pasted[:12]!r}..., not the shown secret")
    button(driver, "Done, close", dialog).click()
    wait(driver, lambda d: not d.find_elements(By.CSS_SELECTOR, "dialog[open]"), "the dialog to close")
    announced(driver, f"Token {TOKEN_NAME} created")
    check(secret not in driver.page_source, "the secret is still in the page source after closing its view")
    values = driver.execute_script(
        "return [...document.querySelectorAll('input, textarea, select')].map((e) => e.value).join('\\n')"
        " + document.body.innerText + document.body.textContent")
    check(secret not in values, "the secret is still in an input value or the page text")
    row = card(driver, TOKEN_NAME)
    check("Live" in row.text, f"a new token is not live: {row.text!r}")
    check("0 of 5" in row.text, f"the use count is not 0 of 5: {row.text!r}")
    expires = row.find_element(By.XPATH, ".//dt[normalize-space()='Expires']/following-sibling::dd[1]")
    first = expires.text
    check(first.startswith("in "), f"no countdown: {first!r}")
    wait(driver, lambda d: expires.text != first, "the expiry countdown to tick", timeout=5)
    return secret, row.get_attribute("data-token-id")


def memberships(driver):
    step("add the identity to a project")
    button(driver, "Memberships").click()
    heading(driver, "Project memberships")
    type_into(field(driver, "Project id"), PROJECT)
    button(driver, "Show memberships").click()
    wait(driver, lambda d: d.find_element(By.ID, "project-heading").text.startswith(f"Members of {PROJECT}"),
         "the project's members")
    card(driver, "deploy-bot")
    identity = Select(field(driver, "Identity"))
    wanted = [o.text for o in identity.options if o.text.startswith(IDENTITY + " (")]
    check(len(wanted) == 1, f"the identity picker lacks {IDENTITY}: {[o.text for o in identity.options]}")
    identity.select_by_visible_text(wanted[0])
    Select(field(driver, "Project role")).select_by_visible_text("viewer")
    button(driver, "Add membership").click()
    announced(driver, f"Added {IDENTITY} to {PROJECT}")
    row = card(driver, IDENTITY)
    check("viewer" in row.text, f"the new membership is not viewer: {row.text!r}")

    step("change the membership's role")
    button(driver, f"Change the role of {IDENTITY}").click()
    Select(field(driver, f"New project role for {IDENTITY}")).select_by_visible_text("member")
    button(driver, "Save roles").click()
    announced(driver, f"Changed the roles of {IDENTITY}")
    wait(driver, lambda d: "member" in card(d, IDENTITY).find_element(
        By.XPATH, ".//dt[normalize-space()='Roles']/following-sibling::dd[1]").text, "the role to read member")
    step("make another membership temporary")
    button(driver, "Change the role of deploy-bot").click()
    Select(field(driver, "New project role for deploy-bot")).select_by_visible_text("admin")
    form = field(driver, "New project role for deploy-bot").find_element(By.XPATH, "./ancestor::form")
    field(driver, "Temporary access", form).click()
    range_ = field(driver, "Temporary range (such as 30m, 1h, 2d)", form)
    type_into(range_, "eight hours")
    button(driver, "Save roles", form).click()
    check("30m" in field_error(driver, range_), "no hint for a bad range")
    type_into(range_, "8h")
    button(driver, "Save roles", form).click()
    announced(driver, "Changed the roles of deploy-bot")
    wait(driver, lambda d: "admin, temporary 8h" in card(d, "deploy-bot").text and "(active)" in card(d, "deploy-bot").text,
         "deploy-bot's temporary admin role")
    screenshot(driver, "memberships", anchor="Members of")
    fits_320(driver, "memberships")


def use_and_watch(driver, secret):
    step("call the upstream through the gateway")
    status, _, body = through_gateway(secret)
    # What the upstream received (identity, project, role) is checked on the Rust side.
    check(status == 200, f"the gateway answered {status}: {body[:300]!r}")

    step("see the use in the console")
    button(driver, "Identities").click()
    heading(driver, "Identities")
    button(driver, f"Tokens of {IDENTITY}").click()
    heading(driver, f"Tokens of {IDENTITY}")
    row = card(driver, TOKEN_NAME)
    check("1 of 5" in row.text, f"the use count did not rise to 1 of 5: {row.text!r}")
    last = row.find_element(By.XPATH, ".//dt[normalize-space()='Last used']/following-sibling::dd[1]").text
    check(last != "never", "last used still reads never")
    as_of = driver.find_element(By.ID, "tokens-as-of").text
    check(as_of.startswith("Use counts as read at "), f"the list does not say when it was read: {as_of!r}")
    screenshot(driver, "tokens")
    fits_320(driver, "tokens")


def revoke(driver, secret):
    step("rename the token")
    row = card(driver, TOKEN_NAME)
    button(driver, f"Rename {TOKEN_NAME}", row).click()
    type_into(field(driver, f"New name for {TOKEN_NAME}", row), RENAMED)
    button(driver, "Save name", row).click()
    announced(driver, f"Renamed to {RENAMED}")

    step("revoke the token in the console")
    row = card(driver, RENAMED)
    button(driver, f"Revoke {RENAMED}", row).click()
    button(driver, "Yes, revoke", row).click()
    announced(driver, f"Revoked {RENAMED}")
    wait(driver, lambda d: "Revoked" in card(d, RENAMED).find_element(By.CLASS_NAME, "badge").text,
         "the Revoked badge")

    step("the gateway refuses the revoked token")
    status, _, body = through_gateway(secret)
    check(status == 401, f"a revoked token got {status}: {body[:300]!r}")
    check("revoked" in json.loads(body).get("message", ""), f"unexpected refusal: {body[:300]!r}")


def status_screen(driver):
    step("status: readiness and request outcomes")
    button(driver, "Status").click()
    heading(driver, "Status")
    wait(driver, lambda d: d.find_element(By.ID, "readiness").text == "Ready", "the store to read Ready")
    # The forwarded request shows once a sample taken after it has arrived (one every 5 s).
    for outcome in ("forwarded", "denied", "all outcomes"):
        wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, f"li[data-outcome='{outcome}'] svg polyline"),
             f"a sparkline for {outcome}", timeout=WAIT)
    fwd = driver.find_element(By.CSS_SELECTOR, "li[data-outcome='forwarded']")
    check(fwd.text.splitlines()[1].startswith("1 in all"), f"forwarded count: {fwd.text!r}")
    # A line worth showing: a few samples (one every 5 s) since signing in.
    wait(driver, lambda d: len(d.find_element(By.CSS_SELECTOR, "li[data-outcome='forwarded'] polyline")
                               .get_attribute("points").split()) >= 4, "four points on the sparkline")
    screenshot(driver, "status")
    fits_320(driver, "status")


def identities_screen(driver):
    step("identities list, search and pagination")
    button(driver, "Identities").click()
    heading(driver, "Identities")
    card(driver, IDENTITY)
    screenshot(driver, "identities")
    fits_320(driver, "identities")
    search = field(driver, "Search by name (this page)")
    type_into(search, "walker")
    wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#identity-list li.card")) == 1, "one match")
    type_into(search, "")
    wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#identity-list li.card")) == 3, "three cards")
    Select(field(driver, "Per page")).select_by_visible_text("10")
    wait(driver, lambda d: d.find_element(By.ID, "identity-page").text == "Page 1 of 1", "one page")


def protected_delete(driver):
    step("a protected identity cannot be deleted: the API's message is shown")
    button(driver, "Manage deploy-bot").click()
    heading(driver, "Identity deploy-bot")
    check(field(driver, "Delete protection").is_selected(), "deploy-bot is not shown as protected")
    button(driver, "Delete identity").click()
    button(driver, "Yes, delete it").click()
    top = wait(driver, lambda d: next((e for e in d.find_elements(By.CSS_SELECTOR, "#identity-edit .form-error")
                                       if e.is_displayed() and e.text.strip()), False), "the refusal at the top of the form")
    check("protection" in top.text, f"unexpected refusal: {top.text!r}")
    heading(driver, "Identity deploy-bot")
    errors = console_errors(driver, allowed_statuses=(400,))
    check(not errors, f"console errors while deleting a protected identity: {errors}")


def identity_token_operator(driver):
    step("sign in with an admin identity's access token")
    type_into(field(driver, "Admin key or access token"), OPERATOR_TOKEN)
    button(driver, "Sign in").click()
    heading(driver, "Identities")
    card(driver, "deploy-bot")
    errors = console_errors(driver)
    check(not errors, f"console errors signing in with an access token: {errors}")

    step("a credential revoked elsewhere returns the console to sign-in")
    status, _, body = http("POST", f"{PROXY}/api/v1/auth/token/revoke", body={"accessToken": OPERATOR_TOKEN})
    check(status == 200, f"self-revoke answered {status}: {body[:300]!r}")
    button(driver, "Memberships").click()
    heading(driver, "Sign in")
    announced(driver, "Signed out")
    check(not driver.find_element(By.ID, "nav").is_displayed(), "the navigation shows after a 401")
    errors = console_errors(driver, allowed_statuses=(401,))
    check(not errors, f"console errors after the credential was revoked: {errors}")


def sign_out(driver):
    step("sign out")
    button(driver, "Sign out").click()
    heading(driver, "Sign in")
    check(not driver.find_element(By.ID, "nav").is_displayed(), "the navigation shows after signing out")
    check(ADMIN_KEY not in driver.page_source, "the admin key is in the page after signing out")


def main():
    check_headers()
    driver = make_driver()
    result = {}
    try:
        wrong_key(driver)
        sign_in(driver)
        result["identityId"] = create_identity(driver)
        attach_token_auth(driver)
        secret, token_id = create_token(driver)
        result.update(tokenId=token_id, accessToken=secret, projectId=PROJECT)
        memberships(driver)
        use_and_watch(driver, secret)
        revoke(driver, secret)
        status_screen(driver)
        identities_screen(driver)
        step("no console errors in the main workflow")
        errors = console_errors(driver)
        check(not errors, f"browser console errors: {errors}")
        protected_delete(driver)
        sign_out(driver)
        identity_token_operator(driver)
    except Exception:
        print(f"FAILED in phase: {phase}", file=sys.stderr, flush=True)
        try:
            driver.save_screenshot(os.path.join(os.path.dirname(RESULT), "failure.png"))
            print("browser log:", json.dumps(driver.get_log("browser"), indent=1), file=sys.stderr)
        except Exception as e:  # the browser itself may be gone
            print(f"(no failure screenshot: {e})", file=sys.stderr)
        raise
    finally:
        driver.quit()
    with open(RESULT, "w") as f:
        json.dump(result, f)
    print("walk complete", flush=True)


if __name__ == "__main__":
    main()
