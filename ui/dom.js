//! Building the page: element lookup and builders (never parsing markup), buttons, select options,
//! the announcement line, and dates as the console shows them. Imports nothing.

export const $ = (id) => document.getElementById(id);

/** An element with properties/attributes and children; never parses markup. */
export function h(tag, attrs, ...children) {
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

export function announce(message, isError) {
  const el = $('announce');
  el.textContent = message;
  el.classList.toggle('error', Boolean(isError));
}

export function button(text, onClick, attrs) {
  const b = h('button', Object.assign({ type: 'button' }, attrs || {}), text);
  b.addEventListener('click', onClick);
  return b;
}

export function selectValue(select, value) {
  if (![...select.options].some((o) => o.value === value)) select.append(h('option', { value, text: value }));
  select.value = value;
}

export function when(iso) {
  if (!iso) return 'never';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}
