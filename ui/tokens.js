//! An identity's tokens: the list, newest first, with paging; each token's status badge, use count,
//! expiry countdown and last use, ticking every second; rename and revoke; and creating one, with
//! its secret shown once in a dialog that keeps it only until it closes.

import { ApiError, api, enc, gatewayNow } from './api.js';
import { go } from './console.js';
import { $, announce, button, h, when } from './dom.js';
import { onSubmit } from './forms.js';
import { state } from './state.js';

export async function loadTokens() {
  if (!state.identity.name) {
    state.identity = (await api('GET', `/api/v1/identities/${enc(state.identity.id)}`)).identity;
  }
  $('tokens-title').textContent = 'Tokens of ' + state.identity.name;
  const { offset, limit } = state.tokens;
  const data = await api('GET',
    `/api/v1/auth/token-auth/identities/${enc(state.identity.id)}/tokens?offset=${offset}&limit=${limit}`);
  state.tokens.items = data.tokens;
  // Counts and last uses move with every request: say when they were read.
  $('tokens-as-of').textContent =
    `Use counts as read at ${new Date(gatewayNow()).toLocaleTimeString()}; Refresh tokens for newer ones.`;
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

function ago(iso, now) {
  if (!iso) return 'never';
  return `${duration(now - Date.parse(iso))} ago (${when(iso)})`;
}

function renderTokens() {
  const list = $('token-list');
  const now = gatewayNow();
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

export function tick() {
  if ($('view-tokens').hidden) return;
  const now = gatewayNow();
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
