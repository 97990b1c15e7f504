//! The operator console's entry: which screen shows, navigation, sign-in and sign-out, and the
//! timers that run while signed in. Everything goes through the documented management API on this
//! origin; each screen's behaviour is in its own module:
//!
//!   api.js          the credential (held there only) and the management API calls
//!   dom.js          element builders, buttons, the announcement line, dates as text
//!   forms.js        form submission, local checks, API errors shown next to their field
//!   ips.js          trusted-IP entries checked as typed (pure)
//!   state.js        what the screens know while signed in, emptied at sign-out
//!   identities.js   the list, search, paging, create; one identity's settings, delete, Token Auth
//!   tokens.js       an identity's tokens, their status and countdown, the show-once secret
//!   memberships.js  a project's identity memberships
//!   status.js       store readiness and request outcomes from /metrics
//!
//! Rules it keeps (the page's CSP enforces most of them): the credential lives only in a variable
//! of this tab (in api.js), never in storage, cookies or the URL; API data reaches the page through
//! textContent, never innerHTML; a new token's secret exists only while its dialog is open.
//!
//! api.js, identities.js and tokens.js import go() and signOut() from here. That cycle is safe:
//! both are function declarations, bound before any module runs, and only called from handlers.

import { ApiError, api, setCredential, signedIn } from './api.js';
import { $, announce } from './dom.js';
import { check, onSubmit } from './forms.js';
import { loadIdentities, loadIdentity } from './identities.js';
import { loadMembershipScreen } from './memberships.js';
import { state } from './state.js';
import { SAMPLE_MS, renderStatus, sample } from './status.js';
import { loadTokens, tick } from './tokens.js';

// ---------------------------------------------------------------- views

function show(view) {
  for (const section of document.querySelectorAll('.view')) {
    section.hidden = section.id !== 'view-' + view;
  }
  const navView = view === 'identity' || view === 'tokens' ? 'identities' : view;
  for (const b of document.querySelectorAll('#nav [data-nav]')) {
    if (b.dataset.nav === navView) b.setAttribute('aria-current', 'page');
    else b.removeAttribute('aria-current');
  }
  const heading = document.querySelector('#view-' + view + ' h1');
  if (heading) heading.focus();
}

export async function go(view) {
  if (!signedIn() && view !== 'signin') view = 'signin';
  show(view);
  try {
    if (view === 'identities') await loadIdentities();
    else if (view === 'identity') await loadIdentity();
    else if (view === 'tokens') await loadTokens();
    else if (view === 'memberships') await loadMembershipScreen();
    else if (view === 'status') renderStatus();
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    if (signedIn()) announce(err.message, true);
  }
}

document.addEventListener('click', (ev) => {
  const target = ev.target instanceof Element ? ev.target.closest('[data-nav]') : null;
  if (!target) return;
  announce(''); // a message about the last screen would mislead on the next
  go(target.dataset.nav);
});

// ---------------------------------------------------------------- sign-in

onSubmit($('signin-form'), async () => {
  const input = $('credential');
  const value = input.value.trim();
  if (!check(input, value ? null : 'Enter the admin key or an access token.')) return;
  setCredential(value);
  try {
    await api('GET', '/api/v1/identities?offset=0&limit=1', undefined, { signingIn: true });
  } catch (err) {
    setCredential(null);
    if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
      check(input, err.message);
      return;
    }
    throw err;
  }
  // The field would otherwise keep the credential in the DOM.
  input.value = '';
  $('nav').hidden = false;
  announce('Signed in.');
  startSampling();
  go('identities');
});

/** The timers that run while signed in: /metrics sampling and the tokens' countdown. */
function startSampling() {
  sample();
  state.timers.push(setInterval(sample, SAMPLE_MS), setInterval(tick, 1000));
}

export function signOut(message) {
  setCredential(null);
  for (const t of state.timers) clearInterval(t);
  state.timers = [];
  state.ids = { offset: 0, limit: state.ids.limit, items: [], total: 0 };
  state.identity = null;
  state.tokenAuth = null;
  state.tokens = { offset: 0, limit: 20, items: [], rows: [] };
  state.project = null;
  state.samples = [];
  for (const id of ['identity-list', 'token-list', 'membership-list', 'outcome-list', 'member-identity']) {
    $(id).replaceChildren();
  }
  // Nothing of the session stays in the page for whoever uses the tab next:
  // every field back to its default, every text the session filled in back
  // to the page's own (kept in data-session), every error message gone.
  for (const form of document.querySelectorAll('form')) form.reset();
  for (const el of document.querySelectorAll('input, textarea')) {
    if (!el.form && el.type !== 'checkbox' && el.type !== 'radio') el.value = '';
  }
  for (const el of document.querySelectorAll('[data-session]')) el.textContent = el.dataset.session;
  for (const el of document.querySelectorAll('[id$="-error"]')) el.textContent = '';
  for (const el of document.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
  $('project-panel').hidden = true;
  $('nav').hidden = true;
  announce(message || 'Signed out.', Boolean(message));
  show('signin');
}

$('sign-out').addEventListener('click', () => signOut());

// ---------------------------------------------------------------- start

show('signin');
