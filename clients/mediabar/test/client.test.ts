import { test } from 'node:test';
import assert from 'node:assert/strict';

import { ERROR_CODES, MediaBar, MediaBarError, type ServerMessage } from '../src/mediabar.js';
import { World, bindSuccess, resourceEvent, stateEvent, tick, until } from './fake.js';

const URL = 'ws://gateway.test/mediabar/v1';

async function connected(options: { requestTimeoutMs?: number; backoff?: { initialMs?: number; maxMs?: number } } = {}, world = new World()) {
  const bar = new MediaBar({ url: URL, WebSocket: world.WebSocket, backoff: { initialMs: 5, maxMs: 20 }, ...options });
  await until(() => bar.connection === 'open', 2000, 'open');
  return { bar, world, socket: world.last };
}

/** A client bound to session `s1` whose full state (a session and a channel view) arrived. */
async function bound(options: Parameters<typeof connected>[0] = {}) {
  const c = await connected(options);
  const binding = c.bar.bind('ref-1');
  await until(() => c.socket.requests('bindResource').length === 1);
  bindSuccess(c.socket, 's1');
  assert.equal(await binding, 's1');
  c.socket.deliver(resourceEvent('s1', stateEvent('s1', 'logged_in', [['session.logout', 'enabled']])));
  c.socket.deliver(resourceEvent('s1', stateEvent('s1.voice', 'ready', [['channel.ready', 'disabled'], ['channel.notReady', 'enabled'], ['channel.dial', 'enabled']])));
  return c;
}

test('connects at once and learns the service status from getServices', async () => {
  const world = new World();
  const statuses: string[] = [];
  const bar = new MediaBar({ url: URL, WebSocket: world.WebSocket });
  assert.equal(bar.connection, 'connecting');
  assert.equal(bar.service, 'unknown');
  assert.equal(bar.sessionId, undefined);
  bar.on('connection', (s) => statuses.push(s));
  await until(() => bar.service === 'available');
  assert.deepEqual(statuses, ['open']);
  assert.equal(world.sockets.length, 1);
  assert.equal(world.last.url, URL);
  assert.equal(world.last.requests('getServices').length, 1);
  bar.close();
  assert.equal(bar.connection, 'closed');
  assert.deepEqual(statuses, ['open', 'closed']);
});

test('without a WebSocket class the constructor says so', () => {
  const saved = (globalThis as { WebSocket?: unknown }).WebSocket;
  delete (globalThis as { WebSocket?: unknown }).WebSocket;
  try {
    assert.throws(() => new MediaBar({ url: URL }), /no WebSocket class/);
  } finally {
    if (saved !== undefined) (globalThis as { WebSocket?: unknown }).WebSocket = saved;
  }
});

test('bind sends bindResource, resolves with the session id, and the full state fills the store', async () => {
  const { bar, socket } = await bound();
  const [request] = socket.requests('bindResource');
  assert.deepEqual(request, {
    messageType: 'coreRequest',
    requestId: request!.requestId,
    request: 'bindResource',
    data: { serviceId: 'WorkflowManager', resourceId: 'ref-1', takeover: false },
  });
  assert.equal(bar.sessionId, 's1');
  assert.deepEqual(bar.views.targets(), ['s1', 's1.voice']);
  const voice = bar.views.get('s1.voice')!;
  assert.equal(voice.target, 's1.voice');
  assert.deepEqual(voice.context, { media: 'voice', state: 'ready' });
  assert.deepEqual(voice.capabilities, { 'channel.ready': 'disabled', 'channel.notReady': 'enabled', 'channel.dial': 'enabled' });
  assert.deepEqual(voice.order, ['channel.ready', 'channel.notReady', 'channel.dial']);
  assert.ok(Math.abs(voice.since - Date.now()) < 1000);
  bar.close();
});

test('bind with takeover sends takeover: true; a refused bind rejects with its code and is not remembered', async () => {
  const { bar, socket } = await connected();
  const first = bar.bind('ref-1', { takeover: true });
  const request = await until(() => socket.requests('bindResource')[0]);
  assert.equal((request as { data: { takeover?: boolean } }).data.takeover, true);
  socket.deliver({ messageType: 'coreResponse', requestId: request.requestId, response: 'bindResource', result: 'failure', error: { code: 'alreadyBound', message: 'taken' } });
  await assert.rejects(first, (e: unknown) => e instanceof MediaBarError && e.code === 'alreadyBound' && e.message === 'taken');
  assert.equal(bar.sessionId, undefined);
  socket.drop();
  await until(() => bar.connection === 'open');
  await tick();
  assert.equal(bar.sessionId, undefined);
  assert.equal(socket.requests('bindResource').length, 1);
  bar.close();
});

test('a bind issued while connecting is sent once the socket opens', async () => {
  const world = new World();
  world.autoOpen = false;
  const bar = new MediaBar({ url: URL, WebSocket: world.WebSocket });
  const binding = bar.bind('ref-1');
  await tick();
  assert.equal(world.last.sent.length, 0);
  world.last.open();
  await until(() => world.last.requests('bindResource').length === 1);
  bindSuccess(world.last, 's9');
  assert.equal(await binding, 's9');
  bar.close();
});

test('each state.updated replaces the whole view, never merges', async () => {
  const { bar, socket } = await bound();
  const seen: Array<[string, string[] | undefined]> = [];
  bar.views.subscribe((target, view) => seen.push([target, view?.order]));
  const before = bar.views.get('s1.voice')!;
  await new Promise((r) => setTimeout(r, 5));
  socket.deliver(resourceEvent('s1', stateEvent('s1.voice', 'ready', [['channel.notReady', 'disabled']], { pending: 'not_ready' })));
  const after = bar.views.get('s1.voice')!;
  assert.deepEqual(after.capabilities, { 'channel.notReady': 'disabled' });
  assert.deepEqual(after.order, ['channel.notReady']);
  assert.deepEqual(after.context, { media: 'voice', state: 'ready', pending: 'not_ready' });
  assert.equal(after.since, before.since, 'same state: since is kept');
  await new Promise((r) => setTimeout(r, 5));
  socket.deliver(resourceEvent('s1', stateEvent('s1.voice', 'not_ready', [['channel.ready', 'enabled']])));
  assert.ok(bar.views.get('s1.voice')!.since > before.since, 'a new state: since moves');
  assert.deepEqual(seen, [['s1.voice', ['channel.notReady']], ['s1.voice', ['channel.ready']]]);
  assert.deepEqual(bar.views.targets(), ['s1', 's1.voice'], 'replacing keeps the insertion order');
  bar.close();
});

test('a target whose event says ended is removed; events of another session are ignored', async () => {
  const { bar, socket } = await bound();
  const seen: Array<[string, unknown]> = [];
  const unsubscribe = bar.views.subscribe((target, view) => seen.push([target, view?.context.state]));
  socket.deliver(resourceEvent('s1', stateEvent('s1.voice.c1', 'alerting', [['interaction.answer', 'enabled']])));
  assert.deepEqual(bar.views.targets(), ['s1', 's1.voice', 's1.voice.c1']);
  socket.deliver(resourceEvent('s1', stateEvent('s1.voice.c1', 'ended', [['interaction.answer', 'disabled']])));
  assert.equal(bar.views.get('s1.voice.c1'), undefined);
  assert.deepEqual(bar.views.targets(), ['s1', 's1.voice']);
  assert.deepEqual(seen, [['s1.voice.c1', 'alerting'], ['s1.voice.c1', undefined]]);
  socket.deliver(resourceEvent('s2', stateEvent('s2.voice', 'ready', [])));
  assert.equal(bar.views.get('s2.voice'), undefined);
  unsubscribe();
  socket.deliver(resourceEvent('s1', stateEvent('s1.voice', 'talking', [])));
  assert.equal(seen.length, 2, 'unsubscribed');
  bar.close();
});

test('execute sends a resourceRequest and resolves with its data', async () => {
  const { bar, socket } = await bound();
  const result = bar.execute('s1.voice', 'channel.dial', { destination: '1234' });
  const request = await until(() => socket.requests('channel.dial')[0]);
  assert.deepEqual(request, {
    messageType: 'resourceRequest',
    requestId: request.requestId,
    serviceId: 'InteractionProcessor',
    resourceId: 's1',
    request: 'channel.dial',
    data: { target: 's1.voice', arguments: { destination: '1234' } },
  });
  socket.deliver({ messageType: 'resourceResponse', requestId: request.requestId, serviceId: 'InteractionProcessor', resourceId: 's1', request: 'channel.dial', data: { interactionId: 'c7' } });
  assert.deepEqual(await result, { interactionId: 'c7' });
  bar.close();
});

test('execute rejects with the code of every resourceError', async () => {
  const { bar, socket } = await bound();
  for (const code of ERROR_CODES) {
    const result = bar.execute('s1.voice', 'channel.ready');
    const request = await until(() => socket.requests('channel.ready').at(-1));
    socket.deliver({ messageType: 'resourceError', requestId: request.requestId, serviceId: 'InteractionProcessor', resourceId: 's1', request: 'channel.ready', error: { code, message: `no: ${code}` } });
    await assert.rejects(result, (e: unknown) => e instanceof MediaBarError && e.code === code && e.message === `no: ${code}` && e.view === undefined, code);
  }
  bar.close();
});

test('capabilityDisabled carries the target current view', async () => {
  const { bar, socket } = await bound();
  const result = bar.execute('s1.voice', 'channel.ready');
  const request = await until(() => socket.requests('channel.ready')[0]);
  const view = stateEvent('s1.voice', 'ready', [['channel.ready', 'disabled'], ['channel.notReady', 'enabled']]);
  socket.deliver({ messageType: 'resourceError', requestId: request.requestId, serviceId: 'InteractionProcessor', resourceId: 's1', request: 'channel.ready', error: { code: 'capabilityDisabled', message: 'disabled' }, data: view });
  const error = await result.then(() => assert.fail('resolved'), (e: unknown) => e as MediaBarError);
  assert.ok(error instanceof MediaBarError);
  assert.equal(error.code, 'capabilityDisabled');
  assert.deepEqual(error.data, view);
  assert.equal(error.view?.target, 's1.voice');
  assert.deepEqual(error.view?.capabilities, { 'channel.ready': 'disabled', 'channel.notReady': 'enabled' });
  assert.deepEqual(error.view?.order, ['channel.ready', 'channel.notReady']);
  assert.equal(error.view?.since, bar.views.get('s1.voice')!.since, 'the same state: the store since');
  bar.close();
});

test('a coreError naming the request rejects it too', async () => {
  const { bar, socket } = await bound();
  const result = bar.execute('s1', 'session.logout');
  const request = await until(() => socket.requests('session.logout')[0]);
  socket.deliver({ messageType: 'coreError', requestId: request.requestId, error: { code: 'rateLimited', message: 'slow down' } });
  await assert.rejects(result, (e: unknown) => e instanceof MediaBarError && e.code === 'rateLimited');
  bar.close();
});

test('execute before a binding rejects notBound, without sending', async () => {
  const { bar, socket } = await connected();
  await assert.rejects(bar.execute('s1', 'session.logout'), (e: unknown) => e instanceof MediaBarError && e.code === 'notBound');
  assert.equal(socket.requests('session.logout').length, 0);
  bar.close();
});

test('a request without an answer rejects with timeout after requestTimeoutMs; a late answer is ignored', async () => {
  const { bar, socket } = await bound({ requestTimeoutMs: 30 });
  const started = Date.now();
  const result = bar.execute('s1.voice', 'channel.ready');
  await assert.rejects(result, (e: unknown) => e instanceof MediaBarError && e.code === 'timeout');
  assert.ok(Date.now() - started >= 25);
  const request = socket.requests('channel.ready')[0]!;
  socket.deliver({ messageType: 'resourceResponse', requestId: request.requestId, serviceId: 'InteractionProcessor', resourceId: 's1', request: 'channel.ready', data: {} });
  assert.equal(bar.connection, 'open');
  bar.close();
});

test('a dropped socket rejects pending requests with disconnected, and the client reconnects and rebinds with takeover', async () => {
  const { bar, world, socket } = await bound();
  const statuses: string[] = [];
  const services: string[] = [];
  bar.on('connection', (s) => statuses.push(s));
  bar.on('service', (s) => services.push(s));
  const pending = bar.execute('s1.voice', 'channel.ready');
  await until(() => socket.requests('channel.ready').length === 1);
  socket.drop();
  await assert.rejects(pending, (e: unknown) => e instanceof MediaBarError && e.code === 'disconnected');
  assert.equal(bar.sessionId, undefined);
  assert.equal(bar.service, 'unknown');
  assert.deepEqual(bar.views.targets(), ['s1', 's1.voice'], 'stale views stay until the rebind');
  await until(() => world.sockets.length === 2 && world.last.requests('bindResource').length === 1, 2000, 'the rebind');
  const again = world.last.requests('bindResource')[0]!;
  assert.deepEqual((again as { data: unknown }).data, { serviceId: 'WorkflowManager', resourceId: 'ref-1', takeover: true });
  const cleared: string[] = [];
  bar.views.subscribe((target, view) => view === undefined && cleared.push(target));
  bindSuccess(world.last, 's1');
  assert.deepEqual(cleared, ['s1', 's1.voice'], 'the rebind clears the store: the full state follows');
  assert.equal(bar.sessionId, 's1');
  world.last.deliver(resourceEvent('s1', stateEvent('s1.voice', 'not_ready', [['channel.ready', 'enabled']])));
  assert.deepEqual(bar.views.targets(), ['s1.voice']);
  assert.deepEqual(statuses, ['closed', 'connecting', 'open']);
  assert.deepEqual(services, ['unknown', 'available']);
  bar.close();
});

test('reconnects back off exponentially with full jitter, and a connection resets the backoff', async (t) => {
  t.mock.method(Math, 'random', () => 0.999);
  const world = new World();
  world.refuse = true;
  const bar = new MediaBar({ url: URL, WebSocket: world.WebSocket, backoff: { initialMs: 40, maxMs: 160 } });
  await until(() => world.sockets.length === 5, 5000, 'five attempts');
  const gaps = world.times.slice(1).map((time, i) => time - world.times[i]!);
  // Ceilings 40, 80, 160, 160 (capped), times random() = 0.999.
  const expected = [40, 80, 160, 160];
  gaps.forEach((gap, i) => {
    assert.ok(gap >= expected[i]! - 3, `gap ${i} is ${gap}, expected about ${expected[i]}`);
    assert.ok(gap < expected[i]! + 60, `gap ${i} is ${gap}, expected about ${expected[i]}`);
  });
  world.refuse = false;
  await until(() => bar.connection === 'open', 2000);
  world.refuse = true;
  const before = world.sockets.length;
  world.last.drop();
  await until(() => world.sockets.length === before + 1, 2000);
  const gap = world.times.at(-1)! - world.times.at(-2)!;
  assert.ok(gap < 40 + 60, `after a connection the first delay is under initialMs again (${gap})`);
  bar.close();
});

test('jitter spreads the delays: random() = 0 reconnects at once', async (t) => {
  t.mock.method(Math, 'random', () => 0);
  const world = new World();
  world.refuse = true;
  const bar = new MediaBar({ url: URL, WebSocket: world.WebSocket, backoff: { initialMs: 1000, maxMs: 1000 } });
  await until(() => world.sockets.length === 4, 1000, 'immediate attempts');
  bar.close();
});

test('service events update the status; service.available while bound clears the store for the full state', async () => {
  const { bar, socket } = await bound();
  const services: string[] = [];
  bar.on('service', (s) => services.push(s));
  socket.deliver({ messageType: 'serviceEvent', serviceId: 'WorkflowManager', event: 'service.unavailable', data: { serviceType: 'WorkflowManager' } });
  assert.equal(bar.service, 'unavailable');
  assert.deepEqual(bar.views.targets(), ['s1', 's1.voice'], 'stale, but kept');
  socket.deliver({ messageType: 'serviceEvent', serviceId: 'WorkflowManager', event: 'service.available', data: { serviceType: 'WorkflowManager', info: { vendor: 'wfm', version: '0.1.0' } } });
  assert.equal(bar.service, 'available');
  assert.deepEqual(bar.views.targets(), []);
  socket.deliver(resourceEvent('s1', stateEvent('s1.voice', 'ready', [])));
  assert.deepEqual(bar.views.targets(), ['s1.voice']);
  assert.deepEqual(services, ['unavailable', 'available']);
  assert.equal(bar.sessionId, 's1');
  bar.close();
});

test('getServices failing with serviceUnavailable marks the service unavailable', async () => {
  const world = new World();
  world.autoServices = false;
  const bar = new MediaBar({ url: URL, WebSocket: world.WebSocket });
  const request = await until(() => world.sockets[0]?.requests('getServices')[0]);
  world.last.deliver({ messageType: 'coreResponse', requestId: request.requestId, response: 'getServices', result: 'failure', error: { code: 'serviceUnavailable', message: 'never reached' } });
  assert.equal(bar.service, 'unavailable');
  bar.close();
});

test('resourceUnbound takenOver: unbound is told, the store cleared, and no rebind follows a reconnect', async () => {
  const { bar, world, socket } = await bound();
  const reasons: string[] = [];
  bar.on('unbound', (r) => reasons.push(r));
  socket.deliver({ messageType: 'coreEvent', event: 'resourceUnbound', data: { serviceId: 'WorkflowManager', resourceId: 's1', reason: 'takenOver' } });
  assert.deepEqual(reasons, ['takenOver']);
  assert.equal(bar.sessionId, undefined);
  assert.deepEqual(bar.views.targets(), []);
  socket.drop();
  await until(() => world.sockets.length === 2 && bar.connection === 'open');
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(world.last.requests('bindResource').length, 0);
  bar.close();
});

test('resourceUnbound serverShutdown: the client binds again once reconnected', async () => {
  const { bar, world, socket } = await bound();
  const reasons: string[] = [];
  bar.on('unbound', (r) => reasons.push(r));
  socket.deliver({ messageType: 'coreEvent', event: 'resourceUnbound', data: { serviceId: 'WorkflowManager', resourceId: 's1', reason: 'serverShutdown' } });
  socket.drop(1001);
  await until(() => world.sockets.length === 2 && world.last.requests('bindResource').length === 1);
  bindSuccess(world.last, 's1');
  assert.equal(bar.sessionId, 's1');
  assert.deepEqual(reasons, ['serverShutdown']);
  bar.close();
});

test('a rebind the gateway refuses for good ends the binding: unbound is told the code', async () => {
  const { bar, world, socket } = await bound();
  const reasons: string[] = [];
  bar.on('unbound', (r) => reasons.push(r));
  socket.drop();
  const request = await until(() => world.sockets.length === 2 && world.last.requests('bindResource')[0]);
  world.last.deliver({ messageType: 'coreResponse', requestId: request.requestId, response: 'bindResource', result: 'failure', error: { code: 'sessionNotFound', message: 'gone' } });
  await until(() => reasons.length === 1);
  assert.deepEqual(reasons, ['sessionNotFound']);
  assert.deepEqual(bar.views.targets(), []);
  bar.close();
});

test('a rebind refused with serviceUnavailable is retried (at service.available at the latest)', async () => {
  const { bar, world, socket } = await bound({ backoff: { initialMs: 5, maxMs: 20 } });
  socket.drop();
  const first = await until(() => world.sockets.length === 2 && world.last.requests('bindResource')[0]);
  world.last.deliver({ messageType: 'coreResponse', requestId: first.requestId, response: 'bindResource', result: 'failure', error: { code: 'serviceUnavailable', message: 'later' } });
  await until(() => world.last.requests('bindResource').length === 2, 2000, 'a second rebind');
  bindSuccess(world.last, 's1');
  assert.equal(bar.sessionId, 's1');
  bar.close();
});

test('unbind sends unbindResource, clears the store and forgets the binding', async () => {
  const { bar, world, socket } = await bound();
  const unbinding = bar.unbind();
  const request = await until(() => socket.requests('unbindResource')[0]);
  assert.deepEqual((request as { data: unknown }).data, { serviceId: 'WorkflowManager', resourceId: 's1' });
  socket.deliver({ messageType: 'coreResponse', requestId: request.requestId, response: 'unbindResource', result: 'success', data: { serviceId: 'WorkflowManager', resourceId: 's1' } });
  await unbinding;
  assert.equal(bar.sessionId, undefined);
  assert.deepEqual(bar.views.targets(), []);
  socket.drop();
  await until(() => world.sockets.length === 2 && bar.connection === 'open');
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(world.last.requests('bindResource').length, 0);
  await bar.unbind(); // nothing bound: resolves
  bar.close();
});

test('close rejects pending requests with closed and stops reconnecting', async () => {
  const { bar, world, socket } = await bound();
  const pending = bar.execute('s1.voice', 'channel.ready');
  await until(() => socket.requests('channel.ready').length === 1);
  bar.close();
  await assert.rejects(pending, (e: unknown) => e instanceof MediaBarError && e.code === 'closed');
  assert.deepEqual(socket.closedWith, { code: 1000, reason: 'client closed' });
  await assert.rejects(bar.bind('ref-1'), (e: unknown) => e instanceof MediaBarError && e.code === 'closed');
  await new Promise((r) => setTimeout(r, 40));
  assert.equal(world.sockets.length, 1);
  assert.equal(bar.connection, 'closed');
});

test('event listeners get every typed frame; frames outside the protocol are ignored', async () => {
  const { bar, socket } = await bound();
  const frames: ServerMessage[] = [];
  const off = bar.on('event', (f) => frames.push(f));
  socket.deliver('not json');
  socket.deliver({ messageType: 'resourceEvent', serviceId: 'WorkflowManager' });
  socket.deliver({ messageType: 'coreError', error: { code: 'invalidJson', message: 'x' } });
  socket.deliver(resourceEvent('s1', stateEvent('s1.voice', 'ready', [])));
  assert.deepEqual(frames.map((f) => f.messageType), ['coreError', 'resourceEvent']);
  off();
  socket.deliver({ messageType: 'coreError', error: { code: 'invalidJson', message: 'x' } });
  assert.equal(frames.length, 2);
  assert.equal(bar.connection, 'open');
  bar.close();
});
