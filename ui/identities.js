//! The identities screens: the list (search on the page, paging, page size) and the create form;
//! one identity's settings and delete; and its Token Auth (TTLs, use limit, trusted IPs checked as
//! typed, rate limit), attached, saved or removed.

import { ApiError, api, enc } from './api.js';
import { go } from './console.js';
import { $, announce, button, h, selectValue, when } from './dom.js';
import { check, clearErrors, onSubmit, setFieldError, showError, wholeNumber } from './forms.js';
import { ipEntries, ipProblem } from './ips.js';
import { state } from './state.js';

export async function loadIdentities() {
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

export async function loadIdentity() {
  const id = state.identity.id;
  const data = await api('GET', `/api/v1/identities/${enc(id)}`);
  state.identity = data.identity;
  // authMethods says whether there is a configuration, so no 404 is asked for.
  state.tokenAuth = data.identity.authMethods.includes('token-auth')
    ? (await api('GET', `/api/v1/auth/token-auth/identities/${enc(id)}`)).identityTokenAuth
    : null;
  renderIdentity();
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
