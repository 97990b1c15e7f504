//! The status screen: the store's readiness from /readyz and request outcomes from /metrics,
//! sampled while signed in and drawn as one sparkline per outcome.

import { signedIn } from './api.js';
import { $, h } from './dom.js';
import { state } from './state.js';

export const SAMPLE_MS = 5000;
const HISTORY = 60; // samples kept: five minutes at one every five seconds

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

export async function sample() {
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
  if (signedIn() && !$('view-status').hidden) renderStatus();
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

export function renderStatus() {
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
