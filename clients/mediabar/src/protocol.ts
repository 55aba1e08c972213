// The MediaBar wire protocol: the messages of docs/mediabar-asyncapi.yaml as TypeScript
// types, and parsers that check a frame's shape before the client trusts it.
//
// A test (test/contract.test.ts) reads the AsyncAPI document and fails when a message type,
// a constant or an error code there is missing here, or when an example there is refused.

/** The only service a gateway fronts. */
export const WORKFLOW_MANAGER = 'WorkflowManager';
/** The service `resourceRequest`s (commands) address. */
export const INTERACTION_PROCESSOR = 'InteractionProcessor';

/** Every `messageType` of the protocol, both directions. */
export const MESSAGE_TYPES = [
  'coreRequest',
  'coreResponse',
  'coreError',
  'coreEvent',
  'serviceEvent',
  'resourceEvent',
  'resourceRequest',
  'resourceResponse',
  'resourceError',
] as const;
export type MessageType = (typeof MESSAGE_TYPES)[number];

/** The `request` names of a `coreRequest`. */
export const CORE_REQUESTS = ['getServices', 'bindResource', 'unbindResource'] as const;
export type CoreRequestName = (typeof CORE_REQUESTS)[number];

/** Every `error.code` the gateway sends (the contract's `ErrorCode` enum). */
export const ERROR_CODES = [
  'invalidJson',
  'invalidMessage',
  'missingRequestId',
  'unknownRequest',
  'invalidRequest',
  'unknownService',
  'unauthorized',
  'alreadyBound',
  'notBound',
  'sessionNotFound',
  'serviceUnavailable',
  'rateLimited',
  'messageTooLarge',
  'internal',
  'unknownTarget',
  'unknownCapability',
  'capabilityDisabled',
  'processorUnavailable',
  'rejected',
  'timeout',
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

/** Codes the client itself rejects with (never sent by the gateway). */
export const CLIENT_ERROR_CODES = ['disconnected', 'closed'] as const;
export type ClientErrorCode = (typeof CLIENT_ERROR_CODES)[number];

/** Why a binding ended without the client asking (`coreEvent` `resourceUnbound`). */
export const UNBOUND_REASONS = ['sessionEnded', 'takenOver', 'serverShutdown', 'expired'] as const;
export type UnboundReason = (typeof UNBOUND_REASONS)[number];

/** The events of a `coreEvent`. */
export const CORE_EVENTS = ['resourceUnbound'] as const;

/** A service's `status` in `getServices`. */
export const SERVICE_STATUSES = ['available', 'unavailable'] as const;

/** The Service Monitor's events. */
export const SERVICE_EVENTS = ['service.available', 'service.unavailable'] as const;

/** `type` of a capability in a view state. */
export const CAPABILITY_STATES = ['enabled', 'disabled'] as const;

/** `result` of a `coreResponse`. */
export const RESULTS = ['success', 'failure'] as const;

/** `messageType` and `name` of the spec's state updated event. */
export const STATE_EVENT = 'stateEvent';
export const STATE_UPDATED = 'state.updated';

/**
 * `error` of a failure. `code` is one of {@link ERROR_CODES}; a newer gateway may send a code
 * this library does not know yet, so the parser passes any string through.
 */
export interface WireError {
  code: ErrorCode | (string & {});
  message: string;
}

export interface ServiceInfo {
  vendor: string;
  version: string;
}

export interface Service {
  serviceId: typeof WORKFLOW_MANAGER;
  serviceType: typeof WORKFLOW_MANAGER;
  status: (typeof SERVICE_STATUSES)[number];
  info: ServiceInfo;
}

/** The spec's `state.updated` event of one target: its entire view state. */
export interface StateEvent {
  messageType: typeof STATE_EVENT;
  target: string;
  name: typeof STATE_UPDATED;
  context: Record<string, string>;
  data: Array<{ name: string; type: 'enabled' | 'disabled' }>;
}

// ---- client to gateway ----------------------------------------------------------------

export interface GetServicesRequest {
  messageType: 'coreRequest';
  requestId: string;
  request: 'getServices';
  data?: Record<string, never>;
}

export interface BindResourceRequest {
  messageType: 'coreRequest';
  requestId: string;
  request: 'bindResource';
  data: { serviceId: typeof WORKFLOW_MANAGER; resourceId: string; takeover?: boolean };
}

export interface UnbindResourceRequest {
  messageType: 'coreRequest';
  requestId: string;
  request: 'unbindResource';
  data?: { serviceId?: typeof WORKFLOW_MANAGER; resourceId?: string };
}

export type CoreRequest = GetServicesRequest | BindResourceRequest | UnbindResourceRequest;

export interface ResourceRequest {
  messageType: 'resourceRequest';
  requestId: string;
  serviceId: typeof INTERACTION_PROCESSOR;
  /** The bound session's id. */
  resourceId: string;
  /** The capability to carry out. */
  request: string;
  data: { target: string; arguments?: Record<string, string> };
}

/** Everything a client may send. */
export type ClientMessage = CoreRequest | ResourceRequest;

// ---- gateway to client ----------------------------------------------------------------

export interface GetServicesSuccess {
  messageType: 'coreResponse';
  requestId: string;
  response: 'getServices';
  result: 'success';
  data: { services: Service[] };
}

export interface ResourceSuccess {
  messageType: 'coreResponse';
  requestId: string;
  response: 'bindResource' | 'unbindResource';
  result: 'success';
  data: { serviceId: typeof WORKFLOW_MANAGER; resourceId: string };
}

export interface RequestFailure {
  messageType: 'coreResponse';
  requestId: string;
  /** The request name as sent (also for an unknown request). */
  response: string;
  result: 'failure';
  error: WireError;
}

export type CoreResponse = GetServicesSuccess | ResourceSuccess | RequestFailure;

export interface CoreError {
  messageType: 'coreError';
  requestId?: string;
  error: WireError;
}

export interface CoreEvent {
  messageType: 'coreEvent';
  event: (typeof CORE_EVENTS)[number];
  data: { serviceId: typeof WORKFLOW_MANAGER; resourceId: string; reason: UnboundReason | (string & {}) };
}

export interface ServiceAvailableEvent {
  messageType: 'serviceEvent';
  serviceId: typeof WORKFLOW_MANAGER;
  event: 'service.available';
  data: { serviceType: typeof WORKFLOW_MANAGER; info: ServiceInfo };
}

export interface ServiceUnavailableEvent {
  messageType: 'serviceEvent';
  serviceId: typeof WORKFLOW_MANAGER;
  event: 'service.unavailable';
  data: { serviceType: typeof WORKFLOW_MANAGER };
}

export type ServiceEvent = ServiceAvailableEvent | ServiceUnavailableEvent;

export interface ResourceEvent {
  messageType: 'resourceEvent';
  serviceId: typeof WORKFLOW_MANAGER;
  /** The session id. */
  resourceId: string;
  event: StateEvent;
}

export interface ResourceResponse {
  messageType: 'resourceResponse';
  requestId: string;
  serviceId: typeof INTERACTION_PROCESSOR;
  resourceId: string;
  request: string;
  data: Record<string, string>;
}

export interface ResourceError {
  messageType: 'resourceError';
  requestId: string;
  /** As the request named it (an unknownService error echoes a wrong one). */
  serviceId: string;
  resourceId: string;
  request: string;
  error: WireError;
  /** With `capabilityDisabled` only: the target's current view state. */
  data?: StateEvent;
}

/** Anything the gateway sends. */
export type ServerMessage =
  | CoreResponse
  | CoreError
  | CoreEvent
  | ServiceEvent
  | ResourceEvent
  | ResourceResponse
  | ResourceError;

// ---- parsing ------------------------------------------------------------------------------

/** A frame that is not a message of the protocol; `message` says what is wrong. */
export class ProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ProtocolError';
  }
}

type Json = Record<string, unknown>;

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function fail(message: string): never {
  throw new ProtocolError(message);
}

function object(value: unknown, field: string): Json {
  return isObject(value) ? value : fail(`${field} is not an object`);
}

function string(value: unknown, field: string): string {
  return typeof value === 'string' ? value : fail(`${field} is not a string`);
}

function constant<T extends string>(value: unknown, expected: T, field: string): T {
  return value === expected ? expected : fail(`${field} is not ${JSON.stringify(expected)}`);
}

function oneOf<T extends string>(value: unknown, allowed: readonly T[], field: string): T {
  return typeof value === 'string' && (allowed as readonly string[]).includes(value)
    ? (value as T)
    : fail(`${field} is not one of ${allowed.join(', ')}`);
}

function requestId(value: unknown, field = 'requestId'): string {
  const id = string(value, field);
  return id.length > 0 && id.length <= 128 ? id : fail(`${field} is not 1 to 128 characters`);
}

function stringMap(value: unknown, field: string): Record<string, string> {
  const map = object(value, field);
  const out: Record<string, string> = {};
  for (const [key, entry] of Object.entries(map)) out[key] = string(entry, `${field}.${key}`);
  return out;
}

function wireError(value: unknown): WireError {
  const error = object(value, 'error');
  return { code: string(error.code, 'error.code'), message: string(error.message, 'error.message') };
}

function serviceInfo(value: unknown, field: string): ServiceInfo {
  const info = object(value, field);
  return { vendor: string(info.vendor, `${field}.vendor`), version: string(info.version, `${field}.version`) };
}

/** Checks a `stateEvent` object (a `resourceEvent`'s `event`, a `capabilityDisabled`'s `data`). */
export function parseStateEvent(value: unknown, field = 'event'): StateEvent {
  const event = object(value, field);
  constant(event.messageType, 'stateEvent', `${field}.messageType`);
  const target = string(event.target, `${field}.target`);
  if (!/^[^.]+(\.[^.]+){0,2}$/.test(target)) fail(`${field}.target is not a dot-notation target`);
  constant(event.name, 'state.updated', `${field}.name`);
  const context = stringMap(event.context, `${field}.context`);
  if (!Array.isArray(event.data)) fail(`${field}.data is not an array`);
  const data = event.data.map((entry: unknown, index: number) => {
    const capability = object(entry, `${field}.data[${index}]`);
    return {
      name: string(capability.name, `${field}.data[${index}].name`),
      type: oneOf(capability.type, CAPABILITY_STATES, `${field}.data[${index}].type`),
    };
  });
  return { messageType: 'stateEvent', target, name: 'state.updated', context, data };
}

/**
 * Checks a decoded frame from the gateway and returns it typed. Fields the contract does not
 * list are ignored (a newer gateway may add some); missing or mistyped ones throw
 * {@link ProtocolError}.
 */
export function toServerMessage(value: unknown): ServerMessage {
  const frame = object(value, 'message');
  const kind = string(frame.messageType, 'messageType');
  switch (kind) {
    case 'coreResponse': {
      const id = requestId(frame.requestId);
      const response = string(frame.response, 'response');
      const result = oneOf(frame.result, RESULTS, 'result');
      if (result === 'failure') {
        return { messageType: kind, requestId: id, response, result, error: wireError(frame.error) };
      }
      const data = object(frame.data, 'data');
      if (response === 'getServices') {
        if (!Array.isArray(data.services) || data.services.length === 0) fail('data.services is not a non-empty array');
        const services = data.services.map((entry: unknown, index: number): Service => {
          const field = `data.services[${index}]`;
          const service = object(entry, field);
          return {
            serviceId: constant(service.serviceId, WORKFLOW_MANAGER, `${field}.serviceId`),
            serviceType: constant(service.serviceType, WORKFLOW_MANAGER, `${field}.serviceType`),
            status: oneOf(service.status, SERVICE_STATUSES, `${field}.status`),
            info: serviceInfo(service.info, `${field}.info`),
          };
        });
        return { messageType: kind, requestId: id, response, result, data: { services } };
      }
      if (response === 'bindResource' || response === 'unbindResource') {
        return {
          messageType: kind,
          requestId: id,
          response,
          result,
          data: {
            serviceId: constant(data.serviceId, WORKFLOW_MANAGER, 'data.serviceId'),
            resourceId: string(data.resourceId, 'data.resourceId'),
          },
        };
      }
      return fail(`a success for unknown request ${JSON.stringify(response)}`);
    }
    case 'coreError': {
      const message: CoreError = { messageType: kind, error: wireError(frame.error) };
      if (frame.requestId !== undefined) message.requestId = requestId(frame.requestId);
      return message;
    }
    case 'coreEvent': {
      oneOf(frame.event, CORE_EVENTS, 'event');
      const data = object(frame.data, 'data');
      return {
        messageType: kind,
        event: 'resourceUnbound',
        data: {
          serviceId: constant(data.serviceId, WORKFLOW_MANAGER, 'data.serviceId'),
          resourceId: string(data.resourceId, 'data.resourceId'),
          reason: string(data.reason, 'data.reason'),
        },
      };
    }
    case 'serviceEvent': {
      const serviceId = constant(frame.serviceId, WORKFLOW_MANAGER, 'serviceId');
      const event = oneOf(frame.event, SERVICE_EVENTS, 'event');
      const data = object(frame.data, 'data');
      const serviceType = constant(data.serviceType, WORKFLOW_MANAGER, 'data.serviceType');
      if (event === 'service.available') {
        return { messageType: kind, serviceId, event, data: { serviceType, info: serviceInfo(data.info, 'data.info') } };
      }
      return { messageType: kind, serviceId, event, data: { serviceType } };
    }
    case 'resourceEvent':
      return {
        messageType: kind,
        serviceId: constant(frame.serviceId, WORKFLOW_MANAGER, 'serviceId'),
        resourceId: string(frame.resourceId, 'resourceId'),
        event: parseStateEvent(frame.event),
      };
    case 'resourceResponse':
      return {
        messageType: kind,
        requestId: requestId(frame.requestId),
        serviceId: constant(frame.serviceId, INTERACTION_PROCESSOR, 'serviceId'),
        resourceId: string(frame.resourceId, 'resourceId'),
        request: string(frame.request, 'request'),
        data: stringMap(frame.data, 'data'),
      };
    case 'resourceError': {
      const message: ResourceError = {
        messageType: kind,
        requestId: requestId(frame.requestId),
        serviceId: string(frame.serviceId, 'serviceId'),
        resourceId: string(frame.resourceId, 'resourceId'),
        request: string(frame.request, 'request'),
        error: wireError(frame.error),
      };
      if (frame.data !== undefined) message.data = parseStateEvent(frame.data, 'data');
      return message;
    }
    default:
      return fail(`messageType ${JSON.stringify(kind)} is not one the gateway sends`);
  }
}

/** Parses one text frame from the gateway; throws {@link ProtocolError} when it is not one. */
export function parseServerMessage(text: string): ServerMessage {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    return fail(`not JSON: ${(error as Error).message}`);
  }
  return toServerMessage(value);
}

/**
 * Checks a decoded client frame the way the gateway does (crates/wfm-gateway/src/protocol.rs),
 * for fakes and tests: a frame this accepts is one the gateway parses as a request.
 */
export function toClientMessage(value: unknown): ClientMessage {
  const frame = object(value, 'message');
  const kind = oneOf(frame.messageType, ['coreRequest', 'resourceRequest'] as const, 'messageType');
  const id = requestId(frame.requestId);
  const request = string(frame.request, 'request');
  if (kind === 'resourceRequest') {
    const serviceId = constant(frame.serviceId, INTERACTION_PROCESSOR, 'serviceId');
    const resourceId = string(frame.resourceId, 'resourceId');
    const data = object(frame.data, 'data');
    const out: ResourceRequest = { messageType: kind, requestId: id, serviceId, resourceId, request, data: { target: string(data.target, 'data.target') } };
    if (data.arguments !== undefined && data.arguments !== null) out.data.arguments = stringMap(data.arguments, 'data.arguments');
    return out;
  }
  const data = frame.data === undefined || frame.data === null ? undefined : object(frame.data, 'data');
  switch (oneOf(request, CORE_REQUESTS, 'request')) {
    case 'getServices':
      return { messageType: kind, requestId: id, request: 'getServices' };
    case 'bindResource': {
      if (!data) return fail('data is missing');
      const out: BindResourceRequest = {
        messageType: kind,
        requestId: id,
        request: 'bindResource',
        data: { serviceId: constant(data.serviceId, WORKFLOW_MANAGER, 'data.serviceId'), resourceId: string(data.resourceId, 'data.resourceId') },
      };
      if (data.takeover !== undefined) {
        if (typeof data.takeover !== 'boolean') fail('data.takeover is not a boolean');
        out.data.takeover = data.takeover;
      }
      return out;
    }
    case 'unbindResource': {
      const out: UnbindResourceRequest = { messageType: kind, requestId: id, request: 'unbindResource' };
      if (data) {
        out.data = {};
        if (data.serviceId !== undefined) out.data.serviceId = constant(data.serviceId, WORKFLOW_MANAGER, 'data.serviceId');
        if (data.resourceId !== undefined) out.data.resourceId = string(data.resourceId, 'data.resourceId');
      }
      return out;
    }
  }
}

/** Parses one text frame a client sends; throws {@link ProtocolError} when it is not one. */
export function parseClientMessage(text: string): ClientMessage {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    return fail(`not JSON: ${(error as Error).message}`);
  }
  return toClientMessage(value);
}
