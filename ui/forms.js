//! Forms: submission with the button held, local checks before a call, and an API error shown next
//! to the field it names (by the 422 detail's field, else a field name in the message) or on top.

import { ApiError } from './api.js';

export function clearErrors(form) {
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

export function setFieldError(input, message) {
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
export function showError(form, err) {
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
export function onSubmit(form, action) {
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
export function check(input, message) {
  setFieldError(input, message);
  if (message) input.focus();
  return !message;
}

export function wholeNumber(input, max) {
  const v = input.value.trim();
  if (!/^\d+$/.test(v)) return [null, 'Enter a whole number (0 or more).'];
  const n = Number(v);
  if (n > max) return [null, `At most ${max}.`];
  return [n, null];
}
