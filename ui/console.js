//! The operator console's behaviour: sign-in, identities, Token Auth, tokens, project memberships
//! and status, all through the documented management API on this origin.
//!
//! Rules it keeps (the page's CSP enforces most of them): the credential lives only in a variable
//! of this tab, never in storage, cookies or the URL; API data reaches the page through
//! textContent, never innerHTML; a new token's secret exists only while its dialog is open.
'use strict';

(() => {
  /** The admin key or access token; null when signed out. Nowhere else. */
  let credential = null;

  const SAMPLE_MS = 5000;
  const HISTORY = 60; // samples kept: five minutes at one every five seconds
  const MEMBER_PAGES = 5; // the identity picker reads at most 5 pages of 100

  const state = {
    ids: { offset: 0, limit: 20, items: [], total: 0 },
    identity: null,
    tokenAuth: null,
    tokens: { offset: 0, limit: 20, items: [], rows: [] },
    project: null,
    samples: [],
    ready: null,
    timers: [],
  };

  const $ = (id) => document.getElementById(id);

  /** An element with properties/attributes and children; never parses markup. */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = v;
      else if (k === 'hidden') el.hidden = true;
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children.flat()) {
      if (c !== null && c !== undefined && c !== false) el.append(c);
    }
    return el;
  }

  function announce(message, isError) {
    const el = $('announce');
    el.textContent = message;
    el.classList.toggle('error', Boolean(isError));
  }

  // ---------------------------------------------------------------- the API

  class ApiError extends Error {
    constructor(status, body) {
      super(body && typeof body.message === 'string' ? body.message : `the gateway answered ${status}`);
      this.status = status;
      const detail = body && Array.isArray(body.details) ? body.details[0] : null;
      this.field = detail && typeof detail.field === 'string' ? detail.field : null;
    }
  }

  /** One management API call on this origin; a 401 while signed in signs out. */
  async function api(method, path, body, opts) {
    const headers = { Authorization: 'Bearer ' + credential };
    const init = { method, headers, cache: 'no-store', credentials: 'omit', redirect: 'error' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let resp;
    try {
      resp = await fetch(path, init);
    } catch (e) {
      throw new ApiError(0, { message: 'the gateway did not answer (' + e.message + ')' });
    }
    const text = await resp.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (_) {
      data = null;
    }
    if (!resp.ok) {
      const err = new ApiError(resp.status, data);
      if (resp.status === 401 && !(opts && opts.signingIn) && credential !== null) {
        signOut('Signed out: ' + err.message);
      }
      throw err;
    }
    return data;
  }

  const enc = encodeURIComponent;

  // ---------------------------------------------------------------- form errors

  function clearErrors(form) {
    for (const p of form.querySelectorAll('.field-error')) {
      p.textContent = '';
      p.hidden = true;
    }
    for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
    const top = form.querySelector('.form-error');
    if (top) {
      top.textContent = '';
      top.hidden = true;
    }
  }

  function errorSlot(input) {
    return document.getElementById(input.id + '-error');
  }

  function setFieldError(input, message) {
    const slot = errorSlot(input);
    if (message) input.setAttribute('aria-invalid', 'true');
    else input.removeAttribute('aria-invalid');
    if (slot) {
      slot.textContent = message || '';
      slot.hidden = !message;
    }
  }

  /** The input an error names: by the 422 detail's field, else by a field name in the message. */
  function inputFor(form, err) {
    const inputs = [...form.querySelectorAll('[data-field]')].filter((el) => errorSlot(el));
    let best = null;
    if (err.field) {
      for (const el of inputs) {
        const f = el.dataset.field;
        const hit = err.field === f || err.field.startsWith(f + '.') || err.field.startsWith(f + '[') ||
          err.field.endsWith('.' + f);
        if (hit && (!best || f.length > best.dataset.field.length)) best = el;
      }
      if (best) return best;
    }
    let bestAt = Infinity;
    for (const el of inputs) {
      const f = el.dataset.field.split('.').pop();
      const m = new RegExp('(^|[^A-Za-z])' + f + '(?![A-Za-z])').exec(err.message);
      if (m && (m.index < bestAt || (m.index === bestAt && f.length > best.dataset.field.length))) {
        best = el;
        bestAt = m.index;
      }
    }
    return best;
  }

  /** Shows an API error next to the field it names, or at the top of the form. */
  function showError(form, err) {
    const input = inputFor(form, err);
    if (input) {
      setFieldError(input, err.message);
      input.focus();
      return;
    }
    const top = form.querySelector('.form-error');
    top.textContent = err.message;
    top.hidden = false;
  }

  /** Runs an async form action with errors shown on the form and the submit button held. */
  function onSubmit(form, action) {
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      clearErrors(form);
      const button = form.querySelector('button[type="submit"]');
      if (button) button.disabled = true;
      try {
        await action(form);
      } catch (err) {
        if (err instanceof ApiError) showError(form, err);
        else throw err;
      } finally {
        if (button) button.disabled = false;
      }
    });
  }

  /** A local check before calling the API; true when the value is fine. */
  function check(input, message) {
    setFieldError(input, message);
    if (message) input.focus();
    return !message;
  }

  function wholeNumber(input, max) {
    const v = input.value.trim();
    if (!/^\d+$/.test(v)) return [null, 'Enter a whole number (0 or more).'];
    const n = Number(v);
    if (n > max) return [null, `At most ${max}.`];
    return [n, null];
  }

  // ---------------------------------------------------------------- IP validation

  function isIPv4(s) {
    const parts = s.split('.');
    return parts.length === 4 && parts.every((p) => /^(0|[1-9]\d{0,2})$/.test(p) && Number(p) <= 255);
  }

  function isIPv6(s) {
    if (!s.includes(':') || !/^[0-9A-Fa-f:.]+$/.test(s)) return false;
    let rest = s;
    if (s.includes('.')) {
      const i = s.lastIndexOf(':');
      if (!isIPv4(s.slice(i + 1))) return false;
      rest = s.slice(0, i + 1) + '0:0'; // the dotted tail stands for two groups
    }
    const hex = (g) => /^[0-9A-Fa-f]{1,4}$/.test(g);
    const halves = rest.split('::');
    if (halves.length > 2) return false;
    if (halves.length === 2) {
      const groups = halves.flatMap((x) => (x === '' ? [] : x.split(':')));
      return groups.every(hex) && groups.length <= 7;
    }
    const groups = rest.split(':');
    return groups.length === 8 && groups.every(hex);
  }

  /** Why one trusted-IP entry is not an address or CIDR block, or null when it is. */
  function ipProblem(entry) {
    const [addr, prefix, extra] = entry.split('/');
    if (extra !== undefined) return `'${entry}' has more than one '/'`;
    const v4 = isIPv4(addr);
    if (!v4 && !isIPv6(addr)) return `'${entry}' is not an IPv4 or IPv6 address or CIDR block`;
    if (prefix !== undefined) {
      const max = v4 ? 32 : 128;
      if (!/^\d{1,3}$/.test(prefix) || Number(prefix) > max) {
        return `'${entry}': the prefix length must be 0 to ${max}`;
      }
    }
    return null;
  }

  function ipEntries(text) {
    return text.split(/[\s,]+/).filter((s) => s !== '');
  }

  /** Validates the trusted IPs field as typed; returns the entries, or null when one is wrong. */
  function checkIps() {
    const input = $('ta-ips');
    const entries = ipEntries(input.value);
    let problem = entries.length === 0 ? 'Enter at least one address or CIDR block (0.0.0.0/0 and ::/0 allow any).' : null;
    for (const e of entries) {
      problem = problem || ipProblem(e);
    }
    setFieldError(input, problem);
    return problem ? null : entries;
  }

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

  async function go(view) {
    if (credential === null && view !== 'signin') view = 'signin';
    show(view);
    try {
      if (view === 'identities') await loadIdentities();
      else if (view === 'identity') await loadIdentity();
      else if (view === 'tokens') await loadTokens();
      else if (view === 'memberships') await loadMembershipScreen();
      else if (view === 'status') renderStatus();
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      if (credential !== null) announce(err.message, true);
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
    credential = value;
    try {
      await api('GET', '/api/v1/identities?offset=0&limit=1', undefined, { signingIn: true });
    } catch (err) {
      credential = null;
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

  function signOut(message) {
    credential = null;
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
    $('project-panel').hidden = true;
    $('nav').hidden = true;
    announce(message || 'Signed out.', Boolean(message));
    show('signin');
  }

  $('sign-out').addEventListener('click', () => signOut());

  // ---------------------------------------------------------------- identities

  async function loadIdentities() {
    const { offset, limit } = state.ids;
    const data = await api('GET', `/api/v1/identities?offset=${offset}&limit=${limit}`);
    if (data.identities.length === 0 && offset > 0 && data.totalCount > 0) {
      // The page emptied (deletions elsewhere): step back to the last page.
      state.ids.offset = Math.max(0, Math.floor((data.totalCount - 1) / limit) * limit);
      return loadIdentities();
    }
    state.ids.items = data.identities;
    state.ids.total = data.totalCount;
    const org = $('new-identity-org');
    if (!org.value && data.identities[0]) org.value = data.identities[0].orgId;
    renderIdentities();
  }

  function renderIdentities() {
    const { items, offset, limit, total } = state.ids;
    const term = $('identity-search').value.trim().toLowerCase();
    const shown = items.filter((i) => i.name.toLowerCase().includes(term));
    const list = $('identity-list');
    list.replaceChildren(...shown.map(identityCard));
    if (shown.length === 0) {
      list.append(h('li', { class: 'empty', text: term ? 'No identity on this page matches.' : 'No identities yet.' }));
    }
    const pages = Math.max(1, Math.ceil(total / limit));
    $('identity-page').textContent = `Page ${Math.floor(offset / limit) + 1} of ${pages}`;
    $('identity-count').textContent = `${total} ${total === 1 ? 'identity' : 'identities'}` +
      (term ? `, ${shown.length} on this page match` : '');
    $('identity-prev').disabled = offset === 0;
    $('identity-next').disabled = offset + limit >= total;
  }

  function identityCard(i) {
    const tokenAuth = i.authMethods.includes('token-auth');
    return h('li', { class: 'card' },
      h('h3', {}, h('span', { text: i.name }),
        h('span', { class: 'badge neutral', text: 'org role: ' + i.role }),
        tokenAuth ? h('span', { class: 'badge live', text: 'Token Auth' }) : null,
        i.hasDeleteProtection ? h('span', { class: 'badge neutral', text: 'delete protected' }) : null),
      h('dl', {},
        h('dt', { text: 'Id' }), h('dd', {}, h('code', { text: i.id })),
        h('dt', { text: 'Organization' }), h('dd', { text: i.orgId }),
        h('dt', { text: 'Created' }), h('dd', { text: when(i.createdAt) })),
      h('div', { class: 'actions' },
        button('Manage', () => openIdentity(i.id, 'identity'), { 'aria-label': 'Manage ' + i.name }),
        button('Tokens', () => openIdentity(i.id, 'tokens'), { 'aria-label': 'Tokens of ' + i.name, class: 'secondary' })));
  }

  function button(text, onClick, attrs) {
    const b = h('button', Object.assign({ type: 'button' }, attrs || {}), text);
    b.addEventListener('click', onClick);
    return b;
  }

  $('identity-search').addEventListener('input', renderIdentities);
  $('identity-page-size').addEventListener('change', (ev) => {
    state.ids.limit = Number(ev.target.value);
    state.ids.offset = 0;
    go('identities');
  });
  $('identity-prev').addEventListener('click', () => {
    state.ids.offset = Math.max(0, state.ids.offset - state.ids.limit);
    go('identities');
  });
  $('identity-next').addEventListener('click', () => {
    state.ids.offset += state.ids.limit;
    go('identities');
  });

  onSubmit($('identity-create'), async (form) => {
    const name = $('new-identity-name');
    const org = $('new-identity-org');
    if (!check(name, name.value.trim() ? null : 'Enter a name.')) return;
    if (!check(org, org.value.trim() ? null : 'Enter the organization id.')) return;
    const data = await api('POST', '/api/v1/identities', {
      name: name.value,
      organizationId: org.value.trim(),
      role: $('new-identity-role').value,
      hasDeleteProtection: $('new-identity-protect').checked,
    });
    form.reset();
    org.value = data.identity.orgId;
    announce(`Created identity ${data.identity.name}.`);
    await openIdentity(data.identity.id, 'identity');
  });

  // ---------------------------------------------------------------- one identity and its Token Auth

  async function openIdentity(id, view) {
    state.identity = { id };
    state.tokens.offset = 0;
    await go(view);
  }

  async function loadIdentity() {
    const id = state.identity.id;
    const data = await api('GET', `/api/v1/identities/${enc(id)}`);
    state.identity = data.identity;
    // authMethods says whether there is a configuration, so no 404 is asked for.
    state.tokenAuth = data.identity.authMethods.includes('token-auth')
      ? (await api('GET', `/api/v1/auth/token-auth/identities/${enc(id)}`)).identityTokenAuth
      : null;
    renderIdentity();
  }

  function selectValue(select, value) {
    if (![...select.options].some((o) => o.value === value)) select.append(h('option', { value, text: value }));
    select.value = value;
  }

  function renderIdentity() {
    const i = state.identity;
    $('identity-title').textContent = 'Identity ' + i.name;
    $('identity-id').textContent = i.id;
    $('identity-org').textContent = i.orgId;
    clearErrors($('identity-edit'));
    clearErrors($('token-auth-form'));
    $('edit-identity-name').value = i.name;
    selectValue($('edit-identity-role'), i.role);
    $('edit-identity-protect').checked = i.hasDeleteProtection;
    $('identity-delete-confirm').hidden = true;
    $('token-auth-remove-confirm').hidden = true;

    const ta = state.tokenAuth;
    $('token-auth-state').textContent = ta
      ? `Attached ${when(ta.createdAt)}. Changes apply to tokens created afterwards; the rate limit applies at once.`
      : 'Not attached: this identity cannot have tokens until Token Auth is attached.';
    const values = ta || { accessTokenTTL: 2592000, accessTokenMaxTTL: 2592000, accessTokenNumUsesLimit: 0,
      accessTokenTrustedIps: [{ ipAddress: '0.0.0.0', prefix: 0 }, { ipAddress: '::', prefix: 0 }], accessTokenRateLimit: null };
    $('ta-ttl').value = values.accessTokenTTL;
    $('ta-max-ttl').value = values.accessTokenMaxTTL;
    $('ta-uses').value = values.accessTokenNumUsesLimit;
    $('ta-ips').value = values.accessTokenTrustedIps.map((t) => `${t.ipAddress}/${t.prefix}`).join('\n');
    const rl = values.accessTokenRateLimit;
    $('ta-rl-on').checked = Boolean(rl);
    $('ta-rl-fields').hidden = !rl;
    $('ta-rl-requests').value = rl ? rl.requests : '';
    $('ta-rl-window').value = rl ? rl.windowSeconds : '';
    $('ta-rl-burst').value = rl ? rl.burst : '';
    $('ta-rl-per').value = rl ? rl.per : 'identity';
    $('token-auth-submit').textContent = ta ? 'Save Token Auth' : 'Attach Token Auth';
    $('token-auth-remove').hidden = !ta;
  }

  onSubmit($('identity-edit'), async () => {
    const name = $('edit-identity-name');
    if (!check(name, name.value.trim() ? null : 'Enter a name.')) return;
    const data = await api('PATCH', `/api/v1/identities/${enc(state.identity.id)}`, {
      name: name.value,
      role: $('edit-identity-role').value,
      hasDeleteProtection: $('edit-identity-protect').checked,
    });
    state.identity = data.identity;
    renderIdentity();
    announce(`Saved identity ${data.identity.name}.`);
  });

  $('identity-delete').addEventListener('click', () => {
    $('identity-delete-confirm').hidden = false;
    $('identity-delete-no').focus();
  });
  $('identity-delete-no').addEventListener('click', () => {
    $('identity-delete-confirm').hidden = true;
    $('identity-delete').focus();
  });
  $('identity-delete-yes').addEventListener('click', async () => {
    const form = $('identity-edit');
    clearErrors(form);
    $('identity-delete-confirm').hidden = true;
    try {
      const data = await api('DELETE', `/api/v1/identities/${enc(state.identity.id)}`);
      state.identity = null;
      announce(`Deleted identity ${data.identity.name}.`);
      await go('identities');
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      showError(form, err);
    }
  });

  $('ta-ips').addEventListener('input', checkIps);
  $('ta-rl-on').addEventListener('change', (ev) => {
    $('ta-rl-fields').hidden = !ev.target.checked;
  });

  onSubmit($('token-auth-form'), async () => {
    const body = {};
    for (const [id, field, max] of [['ta-ttl', 'accessTokenTTL', 315360000], ['ta-max-ttl', 'accessTokenMaxTTL', 315360000],
      ['ta-uses', 'accessTokenNumUsesLimit', Number.MAX_SAFE_INTEGER]]) {
      const [n, problem] = wholeNumber($(id), max);
      if (!check($(id), problem)) return;
      body[field] = n;
    }
    const ips = checkIps();
    if (!ips) {
      $('ta-ips').focus();
      return;
    }
    body.accessTokenTrustedIps = ips.map((ipAddress) => ({ ipAddress }));
    body.accessTokenRateLimit = null;
    if ($('ta-rl-on').checked) {
      const rl = { per: $('ta-rl-per').value };
      for (const [id, field, max] of [['ta-rl-requests', 'requests', 1000000], ['ta-rl-window', 'windowSeconds', 86400],
        ['ta-rl-burst', 'burst', 1000000]]) {
        const input = $(id);
        if (field === 'burst' && input.value.trim() === '') continue;
        const [n, problem] = wholeNumber(input, max);
        if (!check(input, problem || (n === 0 ? 'At least 1.' : null))) return;
        rl[field] = n;
      }
      body.accessTokenRateLimit = rl;
    }
    const attached = Boolean(state.tokenAuth);
    const data = await api(attached ? 'PATCH' : 'POST',
      `/api/v1/auth/token-auth/identities/${enc(state.identity.id)}`, body);
    state.tokenAuth = data.identityTokenAuth;
    state.identity.authMethods = ['token-auth'];
    renderIdentity();
    announce(attached ? 'Saved Token Auth.' : 'Attached Token Auth.');
  });

  $('token-auth-remove').addEventListener('click', () => {
    $('token-auth-remove-confirm').hidden = false;
    $('token-auth-remove-no').focus();
  });
  $('token-auth-remove-no').addEventListener('click', () => {
    $('token-auth-remove-confirm').hidden = true;
    $('token-auth-remove').focus();
  });
  $('token-auth-remove-yes').addEventListener('click', async () => {
    const form = $('token-auth-form');
    clearErrors(form);
    try {
      await api('DELETE', `/api/v1/auth/token-auth/identities/${enc(state.identity.id)}`);
      announce('Removed Token Auth; its tokens are revoked.');
      await loadIdentity();
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      showError(form, err);
    }
  });

  // ---------------------------------------------------------------- tokens

  async function loadTokens() {
    if (!state.identity.name) {
      state.identity = (await api('GET', `/api/v1/identities/${enc(state.identity.id)}`)).identity;
    }
    $('tokens-title').textContent = 'Tokens of ' + state.identity.name;
    const { offset, limit } = state.tokens;
    const data = await api('GET',
      `/api/v1/auth/token-auth/identities/${enc(state.identity.id)}/tokens?offset=${offset}&limit=${limit}`);
    state.tokens.items = data.tokens;
    renderTokens();
  }

  /** Milliseconds since the epoch when the token expires, or null if never (as the gateway computes it). */
  function expiryOf(t) {
    const created = Date.parse(t.createdAt);
    const base = t.accessTokenLastRenewedAt ? Date.parse(t.accessTokenLastRenewedAt) : created;
    if (t.accessTokenPeriod > 0) return base + t.accessTokenPeriod * 1000;
    const byTtl = t.accessTokenTTL > 0 ? base + t.accessTokenTTL * 1000 : Infinity;
    const byMax = t.accessTokenMaxTTL > 0 ? created + t.accessTokenMaxTTL * 1000 : Infinity;
    const at = Math.min(byTtl, byMax);
    return at === Infinity ? null : at;
  }

  function tokenStatus(t, now) {
    if (t.isAccessTokenRevoked) return ['revoked', 'Revoked'];
    const exp = expiryOf(t);
    if (exp !== null && exp <= now) return ['expired', 'Expired'];
    if (t.accessTokenNumUsesLimit > 0 && t.accessTokenNumUses >= t.accessTokenNumUsesLimit) return ['exhausted', 'Exhausted'];
    if (exp !== null) {
      // "Soon" scales with the token's life: the last fifth of it, but never more than a day.
      const base = t.accessTokenLastRenewedAt ? Date.parse(t.accessTokenLastRenewedAt) : Date.parse(t.createdAt);
      if (exp - now <= Math.min(86400000, (exp - base) / 5)) return ['expiring', 'Expiring soon'];
    }
    return ['live', 'Live'];
  }

  function duration(ms) {
    let s = Math.max(0, Math.ceil(ms / 1000));
    const parts = [];
    for (const [unit, size] of [['d', 86400], ['h', 3600], ['m', 60], ['s', 1]]) {
      if (s >= size || (unit === 's' && parts.length === 0)) {
        parts.push(Math.floor(s / size) + unit);
        s %= size;
      }
      if (parts.length === 2) break;
    }
    return parts.join(' ');
  }

  function when(iso) {
    if (!iso) return 'never';
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
  }

  function ago(iso, now) {
    if (!iso) return 'never';
    return `${duration(now - Date.parse(iso))} ago (${when(iso)})`;
  }

  function renderTokens() {
    const list = $('token-list');
    const now = Date.now();
    state.tokens.rows = [];
    const cards = state.tokens.items.map((t) => tokenCard(t, now));
    list.replaceChildren(...cards);
    if (cards.length === 0) list.append(h('li', { class: 'empty', text: 'No tokens on this page.' }));
    $('token-prev').disabled = state.tokens.offset === 0;
    $('token-next').disabled = state.tokens.items.length < state.tokens.limit;
  }

  function tokenCard(t, now) {
    const name = t.name || '(unnamed)';
    const [cls, label] = tokenStatus(t, now);
    const badge = h('span', { class: 'badge ' + cls, text: label });
    const expires = h('dd', {});
    const lastUsed = h('dd', {});
    const row = { t, badge, expires, lastUsed };
    state.tokens.rows.push(row);
    tickRow(row, now);
    const uses = t.accessTokenNumUsesLimit > 0
      ? `${t.accessTokenNumUses} of ${t.accessTokenNumUsesLimit}`
      : `${t.accessTokenNumUses} (no limit)`;
    const card = h('li', { class: 'card', 'data-token-id': t.id },
      h('h3', {}, h('span', { text: name }), badge),
      h('dl', {},
        h('dt', { text: 'Uses' }), h('dd', { class: 'uses', text: uses }),
        h('dt', { text: 'Expires' }), expires,
        h('dt', { text: 'Last used' }), lastUsed,
        h('dt', { text: 'Created' }), h('dd', { text: when(t.createdAt) }),
        h('dt', { text: 'Token id' }), h('dd', {}, h('code', { text: t.id }))));
    const actions = h('div', { class: 'actions' });
    const rename = renameForm(t, name, actions);
    actions.append(button('Rename', () => {
      actions.hidden = true;
      rename.hidden = false;
      rename.querySelector('input').focus();
    }, { 'aria-label': 'Rename ' + name, class: 'secondary' }));
    card.append(actions, rename);
    if (!t.isAccessTokenRevoked) {
      const confirm = h('div', { class: 'confirm', hidden: true },
        h('p', { text: `Revoke ${name}? Requests with it are refused at once.` }));
      const revoke = button('Revoke', () => {
        confirm.hidden = false;
        confirm.querySelector('button').focus();
      }, { 'aria-label': 'Revoke ' + name, class: 'danger' });
      confirm.append(
        button('Yes, revoke', async () => {
          try {
            await api('POST', `/api/v1/auth/token-auth/tokens/${enc(t.id)}/revoke`);
            announce(`Revoked ${name}.`);
            await loadTokens();
          } catch (err) {
            if (!(err instanceof ApiError)) throw err;
            announce(err.message, true);
          }
        }, { class: 'danger' }),
        button('Cancel', () => {
          confirm.hidden = true;
          revoke.focus();
        }, { class: 'secondary' }));
      actions.append(revoke);
      card.append(confirm);
    }
    return card;
  }

  function renameForm(t, name, actions) {
    const id = 'rename-' + t.id;
    const form = h('form', { novalidate: true, hidden: true },
      h('p', { class: 'form-error', role: 'alert', hidden: true }),
      h('div', { class: 'field' },
        h('label', { for: id, text: 'New name for ' + name }),
        h('input', { id, maxlength: 64, 'data-field': 'name', 'aria-describedby': id + '-error' }),
        h('p', { id: id + '-error', class: 'field-error', hidden: true })),
      h('div', { class: 'actions' }, h('button', { type: 'submit', text: 'Save name' })));
    form.querySelector('input').value = t.name;
    form.querySelector('.actions').append(button('Cancel', () => {
      form.hidden = true;
      actions.hidden = false;
      actions.querySelector('button').focus();
    }, { class: 'secondary' }));
    onSubmit(form, async () => {
      const data = await api('PATCH', `/api/v1/auth/token-auth/tokens/${enc(t.id)}`, { name: form.querySelector('input').value });
      announce(`Renamed to ${data.token.name || '(unnamed)'}.`);
      await loadTokens();
    });
    return form;
  }

  function tickRow(row, now) {
    const exp = expiryOf(row.t);
    if (row.t.isAccessTokenRevoked) row.expires.textContent = 'revoked';
    else if (exp === null) row.expires.textContent = 'never';
    else if (exp <= now) row.expires.textContent = `expired ${duration(now - exp)} ago`;
    else row.expires.textContent = `in ${duration(exp - now)}`;
    row.lastUsed.textContent = ago(row.t.accessTokenLastUsedAt, now);
    const [cls, label] = tokenStatus(row.t, now);
    row.badge.className = 'badge ' + cls;
    row.badge.textContent = label;
  }

  function tick() {
    if ($('view-tokens').hidden) return;
    const now = Date.now();
    for (const row of state.tokens.rows) tickRow(row, now);
  }

  $('tokens-refresh').addEventListener('click', () => go('tokens'));
  $('token-prev').addEventListener('click', () => {
    state.tokens.offset = Math.max(0, state.tokens.offset - state.tokens.limit);
    go('tokens');
  });
  $('token-next').addEventListener('click', () => {
    state.tokens.offset += state.tokens.limit;
    go('tokens');
  });

  onSubmit($('token-create'), async (form) => {
    const data = await api('POST', `/api/v1/auth/token-auth/identities/${enc(state.identity.id)}/tokens`,
      { name: $('new-token-name').value });
    form.reset();
    showSecret(data.accessToken, data.tokenData.name || '(unnamed)');
    // Nothing else may keep the secret: the answer object is dropped with this handler, emptied first.
    data.accessToken = null;
    state.tokens.offset = 0;
    await loadTokens();
  });

  /** The show-once view: the secret lives in this closure and this dialog until it closes. */
  function showSecret(secret, name) {
    const dialog = $('secret-dialog');
    const body = $('secret-body');
    const copyButton = $('secret-copy');
    const status = $('secret-copy-status');
    const code = h('code', { id: 'secret-value', class: 'secret', 'aria-label': 'Access token for ' + name });
    code.textContent = secret;
    body.replaceChildren(h('p', { text: `Access token for ${name}:` }), code);
    status.textContent = '';
    copyButton.onclick = async () => {
      try {
        await navigator.clipboard.writeText(secret);
        status.textContent = 'Copied to the clipboard.';
      } catch (_) {
        const range = document.createRange();
        range.selectNodeContents(code);
        window.getSelection().removeAllRanges();
        window.getSelection().addRange(range);
        status.textContent = 'The browser refused to copy: the token is selected, copy it with Ctrl+C.';
      }
    };
    dialog.addEventListener('close', () => {
      secret = null;
      copyButton.onclick = null;
      window.getSelection().removeAllRanges();
      body.replaceChildren();
      status.textContent = '';
      announce(`Token ${name} created; its secret is no longer shown.`);
      $('token-list').focus();
    }, { once: true });
    dialog.showModal();
    copyButton.focus();
  }

  $('secret-close').addEventListener('click', () => $('secret-dialog').close());
  $('token-list').setAttribute('tabindex', '-1');

  // ---------------------------------------------------------------- project memberships

  const PROJECT_ID = /^[a-z0-9]([a-z0-9_-]{0,126}[a-z0-9])?$/;
  const RANGE = /^0*[1-9][0-9]*(ms|s|m|h|d|w|y)$/;

  async function loadMembershipScreen() {
    const identities = [];
    for (let page = 0; page < MEMBER_PAGES; page++) {
      const data = await api('GET', `/api/v1/identities?offset=${page * 100}&limit=100`);
      identities.push(...data.identities);
      if (identities.length >= data.totalCount || data.identities.length === 0) break;
    }
    const select = $('member-identity');
    const previous = select.value;
    select.replaceChildren(...identities.map((i) => h('option', { value: i.id, text: `${i.name} (${i.id.slice(0, 8)})` })));
    if (previous) select.value = previous;
    if (state.project) await loadMemberships();
  }

  onSubmit($('project-form'), async () => {
    const input = $('project-id');
    const value = input.value.trim();
    if (!check(input, PROJECT_ID.test(value) ? null
      : 'A project id is 1 to 128 of a-z, 0-9, - and _, starting and ending with a letter or digit.')) return;
    state.project = value;
    await loadMemberships();
  });

  async function loadMemberships() {
    const project = state.project;
    const data = await api('GET', `/api/v1/projects/${enc(project)}/memberships/identities?offset=0&limit=100`);
    $('project-panel').hidden = false;
    $('project-heading').textContent = `Members of ${project} (${data.totalCount})`;
    const list = $('membership-list');
    list.replaceChildren(...data.identityMemberships.map(membershipCard));
    if (data.identityMemberships.length === 0) list.append(h('li', { class: 'empty', text: 'No identity is a member of this project.' }));
    if (data.totalCount > data.identityMemberships.length) {
      list.append(h('li', { class: 'empty', text: `Showing the first ${data.identityMemberships.length}.` }));
    }
  }

  function roleText(r) {
    const name = r.role === 'custom' && r.customRoleSlug ? r.customRoleSlug : r.role;
    if (!r.isTemporary) return name;
    const end = Date.parse(r.temporaryAccessEndTime);
    const state_ = end <= Date.now() ? 'ended' : Date.parse(r.temporaryAccessStartTime) > Date.now() ? 'not started' : 'active';
    return `${name}, temporary ${r.temporaryRange} from ${when(r.temporaryAccessStartTime)} to ${when(r.temporaryAccessEndTime)} (${state_})`;
  }

  function membershipCard(m) {
    const name = m.identity ? m.identity.name : m.identityId;
    const card = h('li', { class: 'card' },
      h('h3', {}, h('span', { text: name })),
      h('dl', {},
        h('dt', { text: 'Roles' }), h('dd', { text: m.roles.map(roleText).join('; ') }),
        h('dt', { text: 'Identity id' }), h('dd', {}, h('code', { text: m.identityId })),
        h('dt', { text: 'Since' }), h('dd', { text: when(m.createdAt) })));
    const actions = h('div', { class: 'actions' });
    const first = m.roles[0];
    const edit = roleForm('edit-' + m.id, 'Save roles', 'New project role for ' + name, first, async (body) => {
      await api('PATCH', `/api/v1/projects/${enc(state.project)}/memberships/identities/${enc(m.identityId)}`, body);
      announce(`Changed the roles of ${name}.`);
      await loadMemberships();
    });
    edit.hidden = true;
    edit.querySelector('.actions').append(button('Cancel', () => {
      edit.hidden = true;
      actions.hidden = false;
      actions.querySelector('button').focus();
    }, { class: 'secondary' }));
    const confirm = h('div', { class: 'confirm', hidden: true }, h('p', { text: `Remove ${name} from ${state.project}?` }));
    const remove = button('Remove', () => {
      confirm.hidden = false;
      confirm.querySelector('button').focus();
    }, { class: 'danger', 'aria-label': `Remove ${name} from the project` });
    confirm.append(
      button('Yes, remove', async () => {
        try {
          await api('DELETE', `/api/v1/projects/${enc(state.project)}/memberships/identities/${enc(m.identityId)}`);
          announce(`Removed ${name} from ${state.project}.`);
          await loadMemberships();
        } catch (err) {
          if (!(err instanceof ApiError)) throw err;
          announce(err.message, true);
        }
      }, { class: 'danger' }),
      button('Cancel', () => {
        confirm.hidden = true;
        remove.focus();
      }, { class: 'secondary' }));
    actions.append(button('Change role', () => {
      actions.hidden = true;
      edit.hidden = false;
      edit.querySelector('select').focus();
    }, { class: 'secondary', 'aria-label': 'Change the role of ' + name }), remove);
    card.append(actions, edit, confirm);
    return card;
  }

  /** Role, temporary switch, range and start, as one request body (MembershipRequest). */
  function roleBody(form, role, temporary, range, start) {
    if (!temporary.checked) return { role: role.value };
    if (!check(range, RANGE.test(range.value.trim()) ? null : 'Enter a duration such as 30m, 1h or 2d.')) return null;
    const startAt = start.value ? new Date(start.value) : new Date();
    if (!check(start, Number.isNaN(startAt.getTime()) ? 'Enter a date and time.' : null)) return null;
    return { roles: [{ role: role.value, isTemporary: true, temporaryMode: 'relative',
      temporaryRange: range.value.trim(), temporaryAccessStartTime: startAt.toISOString() }] };
  }

  /** The inline form that changes a membership's roles, with fields like the add form's. */
  function roleForm(prefix, submitText, roleLabel, current, send) {
    const field = (id, label, control, dataField) => {
      control.id = id;
      control.setAttribute('data-field', dataField);
      control.setAttribute('aria-describedby', id + '-error');
      return h('div', { class: 'field' }, h('label', { for: id, text: label }), control,
        h('p', { id: id + '-error', class: 'field-error', hidden: true }));
    };
    const role = h('select', {}, ['viewer', 'member', 'admin', 'no-access'].map((r) => h('option', { value: r, text: r })));
    const temporary = h('input', { type: 'checkbox', id: prefix + '-temporary', 'data-field': 'isTemporary' });
    const range = h('input', { spellcheck: 'false' });
    const start = h('input', { type: 'datetime-local', step: '1' });
    const temporaryFields = h('div', { class: 'grid', hidden: true },
      field(prefix + '-range', 'Temporary range (such as 30m, 1h, 2d)', range, 'temporaryRange'),
      field(prefix + '-start', 'Starting at (your local time; empty = now)', start, 'temporaryAccessStartTime'));
    temporary.addEventListener('change', () => {
      temporaryFields.hidden = !temporary.checked;
    });
    const form = h('form', { novalidate: true },
      h('p', { class: 'form-error', role: 'alert', hidden: true }),
      field(prefix + '-role', roleLabel, role, 'role'),
      h('div', { class: 'field check' }, temporary, h('label', { for: prefix + '-temporary', text: 'Temporary access' })),
      temporaryFields,
      h('div', { class: 'actions' }, h('button', { type: 'submit', text: submitText })));
    if (current) {
      selectValue(role, current.role === 'custom' && current.customRoleSlug ? current.customRoleSlug : current.role);
      temporary.checked = current.isTemporary;
      temporaryFields.hidden = !current.isTemporary;
      range.value = current.temporaryRange || '';
    }
    onSubmit(form, async () => {
      const body = roleBody(form, role, temporary, range, start);
      if (body) await send(body);
    });
    return form;
  }

  $('member-temporary').addEventListener('change', (ev) => {
    $('member-temporary-fields').hidden = !ev.target.checked;
  });

  onSubmit($('membership-add'), async (form) => {
    const identity = $('member-identity');
    if (!check(identity, identity.value ? null : 'Create an identity first.')) return;
    const body = roleBody(form, $('member-role'), $('member-temporary'), $('member-range'), $('member-start'));
    if (!body) return;
    const data = await api('POST',
      `/api/v1/projects/${enc(state.project)}/memberships/identities/${enc(identity.value)}`, body);
    const name = data.identityMembership.identity ? data.identityMembership.identity.name : identity.value;
    announce(`Added ${name} to ${state.project}.`);
    $('member-temporary').checked = false;
    $('member-temporary-fields').hidden = true;
    await loadMemberships();
  });

  // ---------------------------------------------------------------- status

  /** `tokengate_requests_total{outcome="..."} N` lines of a Prometheus text page. */
  function parseOutcomes(text) {
    const counts = {};
    for (const line of text.split('\n')) {
      const m = /^tokengate_requests_total\{([^}]*)\}\s+(\S+)/.exec(line);
      if (!m) continue;
      const outcome = /outcome="([^"]*)"/.exec(m[1]);
      const n = Number(m[2]);
      if (outcome && Number.isFinite(n)) counts[outcome[1]] = n;
    }
    return counts;
  }

  async function sample() {
    // /readyz and /metrics need no credential; none is sent.
    try {
      const resp = await fetch('/readyz', { cache: 'no-store', credentials: 'omit' });
      const body = await resp.json().catch(() => null);
      state.ready = { ok: resp.status === 200, detail: body && body.status ? body.status : `HTTP ${resp.status}` };
    } catch (e) {
      state.ready = { ok: false, detail: 'no answer (' + e.message + ')' };
    }
    try {
      const resp = await fetch('/metrics', { cache: 'no-store', credentials: 'omit' });
      if (resp.ok) {
        state.samples.push({ at: Date.now(), counts: parseOutcomes(await resp.text()) });
        if (state.samples.length > HISTORY + 1) state.samples.shift();
      }
    } catch (_) {
      // A missed sample leaves a gap; the next one continues the series.
    }
    if (credential !== null && !$('view-status').hidden) renderStatus();
  }

  function startSampling() {
    sample();
    state.timers.push(setInterval(sample, SAMPLE_MS), setInterval(tick, 1000));
  }

  function sparkline(values, label) {
    const ns = 'http://www.w3.org/2000/svg';
    const svg = document.createElementNS(ns, 'svg');
    svg.setAttribute('viewBox', '0 0 100 30');
    svg.setAttribute('preserveAspectRatio', 'none');
    svg.setAttribute('class', 'spark');
    svg.setAttribute('role', 'img');
    svg.setAttribute('aria-label', label);
    const base = document.createElementNS(ns, 'line');
    for (const [k, v] of [['x1', 0], ['y1', 29], ['x2', 100], ['y2', 29]]) base.setAttribute(k, v);
    base.setAttribute('class', 'baseline');
    svg.append(base);
    if (values.length > 0) {
      const max = Math.max(1, ...values);
      const step = 100 / (HISTORY - 1);
      const x0 = 100 - step * (values.length - 1);
      const points = values.map((v, i) => `${(x0 + i * step).toFixed(2)},${(29 - (v / max) * 27).toFixed(2)}`);
      if (points.length === 1) points.unshift(`${(x0 - step).toFixed(2)},29`);
      const line = document.createElementNS(ns, 'polyline');
      line.setAttribute('points', points.join(' '));
      svg.append(line);
    }
    return svg;
  }

  function renderStatus() {
    $('sample-seconds').textContent = String(SAMPLE_MS / 1000);
    $('sample-minutes').textContent = String((HISTORY * SAMPLE_MS) / 60000);
    const badge = $('readiness');
    if (state.ready) {
      badge.className = 'badge ' + (state.ready.ok ? 'ready' : 'not-ready');
      badge.textContent = state.ready.ok ? 'Ready' : 'Not ready';
      $('readiness-detail').textContent = state.ready.ok ? 'the store answers' : state.ready.detail;
    }
    const samples = state.samples;
    const list = $('outcome-list');
    if (samples.length === 0) {
      list.replaceChildren(h('li', { class: 'empty', text: 'No sample of /metrics yet.' }));
      return;
    }
    const latest = samples[samples.length - 1].counts;
    const outcomes = Object.keys(latest).filter((o) => latest[o] > 0).sort();
    const series = (get) => samples.slice(1).map((s, i) => Math.max(0, get(s.counts) - get(samples[i].counts)));
    const total = (c) => Object.values(c).reduce((a, b) => a + b, 0);
    const rows = [['all outcomes', total]].concat(outcomes.map((o) => [o, (c) => c[o] || 0]));
    list.replaceChildren(...rows.map(([name, get]) => {
      const values = series(get);
      const last = values.length ? values[values.length - 1] : 0;
      const label = `${name}: ${get(latest)} in all, ${last} in the last ${SAMPLE_MS / 1000} seconds, ` +
        `at most ${values.length ? Math.max(...values) : 0} per sample`;
      return h('li', { class: 'card', 'data-outcome': name },
        h('div', {}, h('h3', { text: name }),
          h('p', { class: 'muted', text: `${get(latest)} in all · ${last} in the last sample` })),
        sparkline(values, label));
    }));
    if (outcomes.length === 0) list.append(h('li', { class: 'empty', text: 'No requests counted yet.' }));
  }

  // ---------------------------------------------------------------- start

  show('signin');
})();
