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
