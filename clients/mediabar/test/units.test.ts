import { test } from 'node:test';
import assert from 'node:assert/strict';

import { Backoff, DEFAULT_BACKOFF, ViewStore } from '../src/mediabar.js';
import { stateEvent } from './fake.js';

test('backoff: full jitter under a doubling ceiling, capped, reset', () => {
  const draws = [0.5, 0.5, 0.5, 0.5, 0.5, 0.999, 0];
  const backoff = new Backoff({ initialMs: 100, maxMs: 1000 }, () => draws.shift()!);
  assert.deepEqual([backoff.next(), backoff.next(), backoff.next(), backoff.next(), backoff.next()], [50, 100, 200, 400, 500]);
  assert.equal(backoff.next(), 999);
  assert.equal(backoff.attempt, 6);
  backoff.reset();
  assert.equal(backoff.attempt, 0);
  assert.equal(backoff.next(), 0);
  assert.equal(backoff.ceiling(2000), 1000, 'no overflow for huge attempts');
  const defaults = new Backoff();
  assert.equal(defaults.initialMs, DEFAULT_BACKOFF.initialMs);
  assert.equal(defaults.maxMs, DEFAULT_BACKOFF.maxMs);
  assert.equal(new Backoff({ initialMs: 500, maxMs: 10 }).maxMs, 500, 'maxMs is at least initialMs');
});

test('view store: replace, since, ended removal, clear', () => {
  const store = new ViewStore();
  const seen: Array<[string, string | undefined]> = [];
  store.subscribe((target, view) => seen.push([target, view?.context.state]));
  store.apply(stateEvent('s1.voice', 'ready', [['a', 'enabled'], ['b', 'disabled']]), 1000);
  store.apply(stateEvent('s1', 'logged_in', []), 1000);
  store.apply(stateEvent('s1.voice', 'ready', [['b', 'enabled']]), 2000);
  assert.deepEqual(store.get('s1.voice'), { target: 's1.voice', context: { media: 'voice', state: 'ready' }, capabilities: { b: 'enabled' }, order: ['b'], since: 1000 });
  store.apply(stateEvent('s1.voice', 'not_ready', []), 3000);
  assert.equal(store.get('s1.voice')!.since, 3000);
  assert.deepEqual(store.targets(), ['s1.voice', 's1']);
  store.apply(stateEvent('s1.voice.c9', 'ended', []), 4000);
  assert.equal(store.get('s1.voice.c9'), undefined, 'an unknown target that ends is not added');
  store.apply(stateEvent('s1.voice', 'ended', []), 4000);
  assert.deepEqual(store.targets(), ['s1']);
  store.clear();
  assert.deepEqual(store.targets(), []);
  assert.deepEqual(seen, [['s1.voice', 'ready'], ['s1', 'logged_in'], ['s1.voice', 'ready'], ['s1.voice', 'not_ready'], ['s1.voice', undefined], ['s1', undefined]]);
});

test('a view is a copy: changing the event afterwards changes nothing', () => {
  const store = new ViewStore();
  const event = stateEvent('s1', 'ready', [['a', 'enabled']]);
  store.apply(event);
  event.context.state = 'x';
  event.data[0]!.type = 'disabled';
  assert.equal(store.get('s1')!.context.state, 'ready');
  assert.equal(store.get('s1')!.capabilities.a, 'enabled');
});
