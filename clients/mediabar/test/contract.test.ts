// The library's protocol types against docs/mediabar-asyncapi.yaml.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import * as protocol from '../src/protocol.js';
import { contract, messages, schemas, violations, assertConforms } from './contract.js';

/** Every `const` and `enum` value under `schema`, with where it was found. */
function constants(schema: unknown, path: string, out: Array<[string, unknown]> = []): Array<[string, unknown]> {
  if (Array.isArray(schema)) schema.forEach((s, i) => constants(s, `${path}[${i}]`, out));
  else if (schema && typeof schema === 'object') {
    for (const [key, value] of Object.entries(schema)) {
      if (key === 'const') out.push([path, value]);
      else if (key === 'enum') (value as unknown[]).forEach((v) => out.push([path, v]));
      else if (key !== 'examples') constants(value, `${path}.${key}`, out);
    }
  }
  return out;
}

/** The `messageType` consts a payload schema allows, through `$ref` and `oneOf`. */
function payloadKinds(schema: { $ref?: string; oneOf?: unknown[]; properties?: { messageType?: { const?: string } } }): string[] {
  if (schema.$ref) return payloadKinds(schemas[schema.$ref.split('/').pop()!]!);
  if (schema.oneOf) return schema.oneOf.flatMap((s) => payloadKinds(s as typeof schema));
  const kind = schema.properties?.messageType?.const;
  return kind === undefined ? [] : [kind];
}

/** Every string the protocol module exports, alone or in a list. */
const exported = new Set<unknown>(
  Object.values(protocol).flatMap((value) => (Array.isArray(value) ? value : typeof value === 'string' ? [value] : [])),
);

const SERVER = new Set(['coreResponse', 'coreError', 'coreEvent', 'serviceEvent', 'resourceEvent', 'resourceResponse', 'resourceError']);
const CLIENT = new Set(['coreRequest', 'resourceRequest']);

test('every message of the contract is a messageType of the library, and no other', () => {
  const found = messages();
  assert.deepEqual(new Set(found.map((m) => m.name)), new Set(protocol.MESSAGE_TYPES));
  assert.deepEqual(new Set(Object.keys(contract.channels.mediabar.messages)), new Set(protocol.MESSAGE_TYPES));
  for (const message of found) {
    assert.equal(message.key, message.name);
    assert.ok(SERVER.has(message.name) || CLIENT.has(message.name), message.name);
    // The payload's messageType const is the message's name (through oneOf where it has one).
    const kinds = new Set(payloadKinds({ $ref: message.payloadRef }));
    assert.deepEqual(kinds, new Set([message.name]), `${message.name}'s payload messageType`);
  }
  assert.deepEqual(new Set([...SERVER, ...CLIENT]), new Set(protocol.MESSAGE_TYPES));
});

test('ERROR_CODES is the contract ErrorCode enum, in order', () => {
  assert.deepEqual([...protocol.ERROR_CODES], schemas.ErrorCode.enum);
});

test('the other enums and constants match the contract', () => {
  assert.deepEqual([...protocol.UNBOUND_REASONS], schemas.CoreEvent.properties.data.properties.reason.enum);
  assert.deepEqual([...protocol.CAPABILITY_STATES], schemas.StateEvent.properties.data.items.properties.type.enum);
  assert.deepEqual(protocol.WORKFLOW_MANAGER, schemas.ServiceId.const);
  assert.deepEqual(protocol.INTERACTION_PROCESSOR, schemas.ResourceRequest.properties.serviceId.const);
  assert.deepEqual(new Set(protocol.CORE_REQUESTS), new Set(schemas.CoreRequest.oneOf.map((r: { $ref: string }) => schemas[r.$ref.split('/').pop()!]!.properties.request.const)));
  assert.deepEqual(new Set(protocol.SERVICE_EVENTS), new Set(schemas.ServiceEvent.oneOf.map((s: { properties: { event: { const: string } } }) => s.properties.event.const)));
  assert.equal(protocol.STATE_EVENT, schemas.StateEvent.properties.messageType.const);
  assert.equal(protocol.STATE_UPDATED, schemas.StateEvent.properties.name.const);
});

test('every const and enum value of the contract is exported by protocol.ts', () => {
  const all = constants(schemas, 'schemas');
  assert.ok(all.length > 40, `found ${all.length} constants`);
  const missing = all.filter(([, value]) => !exported.has(value));
  assert.deepEqual(missing, [], 'constants of the contract the library does not know');
});

test('every example of the contract conforms to its schema and the library parser accepts it unchanged', () => {
  let count = 0;
  for (const message of messages()) {
    assert.ok(message.examples.length > 0, `${message.name} has examples`);
    for (const example of message.examples) {
      const label = `${message.name}/${example.name}`;
      assert.deepEqual(violations({ $ref: message.payloadRef }, example.payload), [], `${label} conforms (the validator works)`);
      const parsed = SERVER.has(message.name) ? protocol.toServerMessage(example.payload) : protocol.toClientMessage(example.payload);
      assert.deepEqual(parsed, example.payload, `${label} is parsed without loss`);
      const again = SERVER.has(message.name)
        ? protocol.parseServerMessage(JSON.stringify(example.payload))
        : protocol.parseClientMessage(JSON.stringify(example.payload));
      assert.deepEqual(again, example.payload, label);
      if (SERVER.has(message.name)) assertConforms('ServerMessage', example.payload);
      else assertConforms('ClientMessage', example.payload);
      count += 1;
    }
  }
  assert.ok(count >= 15, `${count} examples`);
});

test('the parser refuses frames the contract refuses', () => {
  const bad: unknown[] = [
    [],
    {},
    { messageType: 'coreResponse', response: 'getServices', result: 'success', data: { services: [] } },
    { messageType: 'coreResponse', requestId: '', response: 'bindResource', result: 'failure', error: { code: 'x', message: 'y' } },
    { messageType: 'coreResponse', requestId: '1', response: 'bindResource', result: 'maybe' },
    { messageType: 'coreResponse', requestId: '1', response: 'bindResource', result: 'success', data: { serviceId: 'Other', resourceId: 's1' } },
    { messageType: 'coreError', error: { code: 'invalidJson' } },
    { messageType: 'coreEvent', event: 'somethingElse', data: { serviceId: 'WorkflowManager', resourceId: 's1', reason: 'takenOver' } },
    { messageType: 'serviceEvent', serviceId: 'WorkflowManager', event: 'service.available', data: { serviceType: 'WorkflowManager' } },
    { messageType: 'resourceEvent', serviceId: 'WorkflowManager', resourceId: 's1', event: { messageType: 'stateEvent', target: 'a.b.c.d', name: 'state.updated', context: {}, data: [] } },
    { messageType: 'resourceEvent', serviceId: 'WorkflowManager', resourceId: 's1', event: { messageType: 'stateEvent', target: 's1', name: 'state.updated', context: { n: 1 }, data: [] } },
    { messageType: 'resourceEvent', serviceId: 'WorkflowManager', resourceId: 's1', event: { messageType: 'stateEvent', target: 's1', name: 'state.updated', context: {}, data: [{ name: 'x', type: 'on' }] } },
    { messageType: 'resourceResponse', requestId: '1', serviceId: 'InteractionProcessor', resourceId: 's1', request: 'x', data: { n: 2 } },
    { messageType: 'resourceError', requestId: '1', serviceId: 'InteractionProcessor', resourceId: 's1', request: 'x' },
    { messageType: 'coreRequest', requestId: '1', request: 'getServices' },
  ];
  for (const frame of bad) {
    assert.throws(() => protocol.toServerMessage(frame), protocol.ProtocolError, JSON.stringify(frame));
    assert.notDeepEqual(violations(schemas.ServerMessage!, frame), [], `the contract refuses ${JSON.stringify(frame)} too`);
  }
  assert.throws(() => protocol.parseServerMessage('{'), protocol.ProtocolError);
  const badClient: unknown[] = [
    { messageType: 'coreRequest', request: 'getServices' },
    { messageType: 'coreRequest', requestId: 'x'.repeat(129), request: 'getServices' },
    { messageType: 'coreRequest', requestId: '1', request: 'bindResource', data: { serviceId: 'WorkflowManager' } },
    { messageType: 'coreRequest', requestId: '1', request: 'bindResource', data: { serviceId: 'WorkflowManager', resourceId: 'r', takeover: 'yes' } },
    { messageType: 'resourceRequest', requestId: '1', serviceId: 'WorkflowManager', resourceId: 's1', request: 'x', data: { target: 's1' } },
    { messageType: 'resourceRequest', requestId: '1', serviceId: 'InteractionProcessor', resourceId: 's1', request: 'x', data: { target: 's1', arguments: { a: 1 } } },
  ];
  for (const frame of badClient) {
    assert.throws(() => protocol.toClientMessage(frame), protocol.ProtocolError, JSON.stringify(frame));
    assert.notDeepEqual(violations(schemas.ClientMessage!, frame), [], `the contract refuses ${JSON.stringify(frame)} too`);
  }
});

test('unknown fields are ignored and unknown error codes passed through (a newer gateway)', () => {
  const frame = protocol.toServerMessage({ messageType: 'coreError', error: { code: 'brandNew', message: 'm', hint: 1 }, extra: true });
  assert.deepEqual(frame, { messageType: 'coreError', error: { code: 'brandNew', message: 'm' } });
});
