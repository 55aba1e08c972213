// The shipped file: dist/mediabar.js is one self-contained module with the entry's exports,
// and it works (a bind, an event, an execute) against the fake gateway.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

import * as entry from '../src/mediabar.js';
import { World, bindSuccess, resourceEvent, stateEvent, until } from './fake.js';
import { packageRoot } from './contract.js';

const bundlePath = join(packageRoot(), 'dist', 'mediabar.js');

test('dist/mediabar.js imports nothing and exports what src/mediabar.ts does', async () => {
  const text = readFileSync(bundlePath, 'utf8');
  assert.doesNotMatch(text, /^\s*import\b/m);
  assert.doesNotMatch(text, /\bfrom\s+['"]/);
  const bundle: typeof entry = await import(pathToFileURL(bundlePath).href);
  assert.deepEqual(Object.keys(bundle).sort(), Object.keys(entry).sort());
  for (const name of ['MediaBar', 'MediaBarError', 'ViewStore', 'ERROR_CODES']) assert.ok(name in bundle, name);
});

test('the bundle binds, fills its store and executes', async () => {
  const { MediaBar, MediaBarError }: typeof entry = await import(pathToFileURL(bundlePath).href);
  const world = new World();
  const bar = new MediaBar({ url: 'ws://x/mediabar/v1', WebSocket: world.WebSocket });
  const binding = bar.bind('ref');
  await until(() => world.sockets[0]?.requests('bindResource')[0]);
  bindSuccess(world.last, 's1');
  assert.equal(await binding, 's1');
  world.last.deliver(resourceEvent('s1', stateEvent('s1.voice', 'ready', [['channel.notReady', 'enabled']])));
  assert.equal(bar.views.get('s1.voice')?.capabilities['channel.notReady'], 'enabled');
  const result = bar.execute('s1.voice', 'nope');
  const request = await until(() => world.last.requests('nope')[0]);
  world.last.deliver({ messageType: 'resourceError', requestId: request.requestId, serviceId: 'InteractionProcessor', resourceId: 's1', request: 'nope', error: { code: 'unknownCapability', message: 'no' } });
  await assert.rejects(result, (e: unknown) => e instanceof MediaBarError && e.code === 'unknownCapability');
  bar.close();
});
