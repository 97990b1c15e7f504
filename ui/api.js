//! The management API on this origin, and the credential its calls carry: held in this module's
//! variable only, never in storage, cookies or the URL. Other modules can set or drop it and ask
//! whether there is one, never read it.

import { signOut } from './console.js';

/** The admin key or access token; null when signed out. Nowhere else. */
let credential = null;

/** Whether an operator is signed in. */
export function signedIn() {
  return credential !== null;
}

/** Keeps the credential the calls carry from now on; null drops it. */
export function setCredential(value) {
  credential = value;
}

/**
 * How far the gateway's clock is ahead of this computer's, in ms, from the
 * Date of its last answer, when they differ by more than 2 s: expiry and
 * "ended" are decided
 * by the gateway's clock, so a page on a skewed laptop must not show a live
 * token as expired, or the reverse.
 */
let clockOffset = 0;

/** Now, by the gateway's clock as last seen. */
export function gatewayNow() {
  return Date.now() + clockOffset;
}

export class ApiError extends Error {
  constructor(status, body) {
    super(body && typeof body.message === 'string' ? body.message : `the gateway answered ${status}`);
    this.status = status;
    const detail = body && Array.isArray(body.details) ? body.details[0] : null;
    this.field = detail && typeof detail.field === 'string' ? detail.field : null;
  }
}

/** One management API call on this origin; a 401 while signed in signs out. */
export async function api(method, path, body, opts) {
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
  const date = Date.parse(resp.headers.get('date') || '');
  if (!Number.isNaN(date)) {
    // Date is to the second (the gateway's time is within the next 1000
    // ms): clocks that agree that closely are taken as agreeing, so what
    // just started reads as started.
    const skew = date + 500 - Date.now();
    clockOffset = Math.abs(skew) > 2000 ? skew : 0;
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

export const enc = encodeURIComponent;
