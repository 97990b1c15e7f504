//! What the screens know while an operator is signed in: one object, shared by the screen modules
//! and emptied by signOut() in console.js. No credential and no token secret is ever kept here.

export const state = {
  ids: { offset: 0, limit: 20, items: [], total: 0 },
  identity: null,
  tokenAuth: null,
  tokens: { offset: 0, limit: 20, items: [], rows: [] },
  project: null,
  samples: [],
  ready: null,
  timers: [],
};
