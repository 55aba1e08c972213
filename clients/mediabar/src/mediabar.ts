// @wfm/mediabar: the entry module. scripts/build.mjs bundles the modules it re-exports into
// one self-contained ES module, dist/mediabar.js (and dist/mediabar.d.ts).

export * from './protocol.js';
export * from './views.js';
export * from './backoff.js';
export * from './client.js';
