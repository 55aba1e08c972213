// An in-memory WebSocket and a scriptable gateway behind it, for the unit tests. Every frame
// the client sends is checked against the contract's ClientMessage schema and parsed the way
// the gateway parses it.

import type { ClientMessage, StateEvent } from '../src/protocol.js';
import { parseClientMessage } from '../src/protocol.js';
import { assertConforms } from './contract.js';

export class FakeSocket {
  static readonly CONNECTING = 0;
  static readonly OPEN = 1;
  static readonly CLOSING = 2;
  static readonly CLOSED = 3;

  readyState = FakeSocket.CONNECTING;
  onopen: ((event: unknown) => void) | null = null;
  onmessage: ((event: { data: unknown }) => void) | null = null;
  onclose: ((event: unknown) => void) | null = null;
  onerror: ((event: unknown) => void) | null = null;
  readonly sent: ClientMessage[] = [];
  closedWith: { code?: number; reason?: string } | undefined;

  constructor(
    readonly url: string,
    private readonly world: World,
  ) {}

  send(text: string): void {
    if (this.readyState !== FakeSocket.OPEN) throw new Error('send on a socket that is not open');
    assertConforms('ClientMessage', JSON.parse(text));
    const message = parseClientMessage(text);
    this.sent.push(message);
    if (this.world.autoServices && message.messageType === 'coreRequest' && message.request === 'getServices') {
      this.deliver({
        messageType: 'coreResponse',
        requestId: message.requestId,
        response: 'getServices',
        result: 'success',
        data: { services: [{ serviceId: 'WorkflowManager', serviceType: 'WorkflowManager', status: this.world.serviceStatus, info: { vendor: 'wfm', version: '0.1.0' } }] },
      });
    }
  }

  close(code?: number, reason?: string): void {
    this.closedWith = { code, reason };
    if (this.readyState === FakeSocket.CLOSED) return;
    this.readyState = FakeSocket.CLOSED;
    queueMicrotask(() => this.onclose?.({ code: code ?? 1005, reason: reason ?? '' }));
  }

  // ---- the gateway's side ----

  open(): void {
    this.readyState = FakeSocket.OPEN;
    this.onopen?.({});
  }

  deliver(frame: unknown): void {
    this.onmessage?.({ data: typeof frame === 'string' ? frame : JSON.stringify(frame) });
  }

  drop(code = 1006): void {
    this.readyState = FakeSocket.CLOSED;
    this.onclose?.({ code, reason: '' });
  }

  /** The requests of one kind the client sent, in order. */
  requests(request: string): ClientMessage[] {
    return this.sent.filter((m) => m.request === request);
  }
}

/** The sockets one client made, and how the fake gateway behaves. */
export class World {
  readonly sockets: FakeSocket[] = [];
  readonly times: number[] = [];
  autoServices = true;
  serviceStatus: 'available' | 'unavailable' = 'available';
  /** Open each socket as soon as it is made (on the next tick). */
  autoOpen = true;
  /** Refuse each connection (close at once) instead of opening it. */
  refuse = false;

  /** The class to pass as `options.WebSocket`. */
  get WebSocket(): typeof WebSocket {
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const world = this;
    class Bound extends FakeSocket {
      constructor(url: string) {
        super(url, world);
        world.sockets.push(this);
        world.times.push(performance.now());
        if (world.refuse) setTimeout(() => this.drop(1006), 0);
        else if (world.autoOpen) setTimeout(() => this.open(), 0);
      }
    }
    return Bound as unknown as typeof WebSocket;
  }

  get last(): FakeSocket {
    const socket = this.sockets.at(-1);
    if (!socket) throw new Error('no socket yet');
    return socket;
  }
}

/** Waits (polling each macrotask) until `f` returns something truthy, at most `ms`. */
export async function until<T>(f: () => T | undefined | false | null, ms = 2000, what = 'a condition'): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = f();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

export const tick = () => new Promise((resolve) => setTimeout(resolve, 0));

export function stateEvent(target: string, state: string, capabilities: Array<[string, 'enabled' | 'disabled']>, extra: Record<string, string> = {}): StateEvent {
  return {
    messageType: 'stateEvent',
    target,
    name: 'state.updated',
    context: { media: 'voice', state, ...extra },
    data: capabilities.map(([name, type]) => ({ name, type })),
  };
}

export function resourceEvent(sessionId: string, event: StateEvent) {
  return { messageType: 'resourceEvent', serviceId: 'WorkflowManager', resourceId: sessionId, event };
}

/** Answers the client's latest unanswered bindResource with success for `sessionId`. */
export function bindSuccess(socket: FakeSocket, sessionId: string, request = socket.requests('bindResource').at(-1)) {
  if (!request) throw new Error('no bindResource sent');
  socket.deliver({ messageType: 'coreResponse', requestId: request.requestId, response: 'bindResource', result: 'success', data: { serviceId: 'WorkflowManager', resourceId: sessionId } });
}
