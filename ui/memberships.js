//! A project's identity memberships: the project picked by id, its members with their roles
//! (temporary ones with their window), adding an identity, changing a member's roles, removing one.

import { ApiError, api, enc, gatewayNow } from './api.js';
import { $, announce, button, h, selectValue, when } from './dom.js';
import { check, onSubmit } from './forms.js';
import { state } from './state.js';

const MEMBER_PAGES = 5; // the identity picker reads at most 5 pages of 100
const PROJECT_ID = /^[a-z0-9]([a-z0-9_-]{0,126}[a-z0-9])?$/;
const RANGE = /^0*[1-9][0-9]*(ms|s|m|h|d|w|y)$/;

export async function loadMembershipScreen() {
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
  const now = gatewayNow();
  const state_ = end <= now ? 'ended' : Date.parse(r.temporaryAccessStartTime) > now ? 'not started' : 'active';
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
