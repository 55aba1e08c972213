// Against a real stack: `wfm up` with one demo agent, the library over a real WebSocket.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import { MediaBar, MediaBarError, type TargetView } from '../../src/mediabar.js';
import { assertConforms } from '../contract.js';
import { startStack, type Stack } from './stack.js';
import { NodeWebSocket } from './ws.js';

interface DemoSession {
  agentId: string;
  sessionId: string;
  reference: string;
}

let stack: Stack;
let bar: MediaBar;
let session: DemoSession;

async function until<T>(f: () => T | undefined | false, ms: number, what: string): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = f();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function rejection(promise: Promise<unknown>): Promise<MediaBarError> {
  try {
    const result = await promise;
    throw new Error(`resolved with ${JSON.stringify(result)}`);
  } catch (error) {
    if (!(error instanceof MediaBarError)) throw error;
    return error;
  }
}

before(async () => {
  stack = await startStack();
  const response = await fetch(new URL('/demo/sessions', stack.page));
  assert.equal(response.status, 200);
  const sessions = (await response.json()) as DemoSession[];
  assert.equal(sessions.length, 1);
  session = sessions[0]!;
  for (const field of ['agentId', 'sessionId', 'reference'] as const) assert.equal(typeof session[field], 'string', field);
  bar = new MediaBar({ url: stack.mediabar, WebSocket: NodeWebSocket as unknown as typeof WebSocket, requestTimeoutMs: 10_000 });
});

after(async () => {
  bar?.close();
  await stack?.stop();
});

test('bind gets the full state: the session and its voice channel', async () => {
  const sessionId = await bar.bind(session.reference);
  assert.equal(sessionId, session.sessionId);
  assert.equal(bar.sessionId, session.sessionId);
  assert.equal(bar.connection, 'open');
  await until(() => bar.service === 'available', 5000, 'getServices');
  const voice = await until(
    () => bar.views.targets().map((t) => bar.views.get(t)!).find((v) => v.target.split('.').length === 2 && v.context.media === 'voice'),
    10_000,
    'a voice channel view',
  );
  const own = bar.views.get(session.sessionId);
  assert.ok(own, `the session's own view, among ${bar.views.targets().join(', ')}`);
  for (const view of [own, voice]) {
    assert.ok(view.order.length > 0, `${view.target} lists capabilities`);
    assert.deepEqual(Object.keys(view.capabilities).sort(), [...view.order].sort());
    assert.equal(typeof view.context.state, 'string');
  }
  for (const target of bar.views.targets()) assert.ok(target === session.sessionId || target.startsWith(`${session.sessionId}.`), target);
});

/** A target view and one of its capabilities in the given state, from the store. */
function find(state: 'enabled' | 'disabled', skip: (view: TargetView, capability: string) => boolean = () => false) {
  for (const target of bar.views.targets()) {
    const view = bar.views.get(target)!;
    const capability = view.order.find((name) => view.capabilities[name] === state && !skip(view, name));
    if (capability) return { view, capability };
  }
  return undefined;
}

test('a capability disabled in the current view is refused with capabilityDisabled, carrying the view', async () => {
  // The demo agent keeps changing its state: retry when the capability got enabled meanwhile.
  const codes: string[] = [];
  for (let attempt = 0; attempt < 20; attempt += 1) {
    const found = await until(() => find('disabled'), 10_000, 'a disabled capability');
    const error = await rejection(bar.execute(found.view.target, found.capability));
    codes.push(error.code);
    if (error.code !== 'capabilityDisabled') continue;
    assert.ok(error.view, 'the error carries the view');
    assert.equal(error.view.target, found.view.target);
    assert.equal(error.view.capabilities[found.capability], 'disabled');
    assert.ok(error.view.order.includes(found.capability));
    assertConforms('StateEvent', error.data);
    return;
  }
  assert.fail(`never refused with capabilityDisabled: ${codes.join(', ')}`);
});

test('an unknown capability is refused with unknownCapability', async () => {
  const error = await rejection(bar.execute(session.sessionId, 'no.suchCapability'));
  assert.equal(error.code, 'unknownCapability');
});

test('an unknown target is refused with unknownTarget', async () => {
  const error = await rejection(bar.execute(`${session.sessionId}.noSuchChannel`, 'channel.ready'));
  assert.equal(error.code, 'unknownTarget');
});

test('an enabled command is carried out by the demo agent (wfm up runs an Interaction Processor)', async (t) => {
  const codes: string[] = [];
  const tried = new Set<string>();
  for (let attempt = 0; attempt < 20; attempt += 1) {
    const found = await until(() => find('enabled', (view, name) => tried.has(`${view.target} ${name}`)) ?? (tried.clear(), undefined), 10_000, 'an enabled capability');
    try {
      const result = await bar.execute(found.view.target, found.capability);
      assert.equal(typeof result, 'object');
      t.diagnostic(`${found.capability} on ${found.view.target} resolved with ${JSON.stringify(result)}`);
      return;
    } catch (error) {
      if (!(error instanceof MediaBarError)) throw error;
      codes.push(`${found.capability}: ${error.code}`);
      // Raced with a state change, or the processor refused this one (arguments needed): next.
      tried.add(`${found.view.target} ${found.capability}`);
    }
  }
  assert.fail(`no enabled command was carried out: ${codes.join('; ')}`);
});

test('every frame the gateway sent conforms to the contract', () => {
  assert.ok(NodeWebSocket.received.length > 3);
  for (const text of NodeWebSocket.received) assertConforms('ServerMessage', JSON.parse(text));
});

test('unbind releases the session and clears the store', async () => {
  await bar.unbind();
  assert.equal(bar.sessionId, undefined);
  assert.deepEqual(bar.views.targets(), []);
  // Bound again, with takeover as a reload would: it works.
  assert.equal(await bar.bind(session.reference, { takeover: true }), session.sessionId);
  await until(() => bar.views.get(session.sessionId), 10_000, 'the full state again');
});
