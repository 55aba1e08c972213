// The MediaBar client: one WebSocket to the gateway, at most one binding, reconnects.

import {
  INTERACTION_PROCESSOR,
  WORKFLOW_MANAGER,
  parseServerMessage,
  type ClientMessage,
  type CoreEvent,
  type ServerMessage,
  type ServiceEvent,
  type StateEvent,
} from './protocol.js';
import { ViewStore, callSafely, viewOf, type TargetView } from './views.js';
import { Backoff } from './backoff.js';

export type ConnectionStatus = 'connecting' | 'open' | 'closed';
export type ServiceStatus = 'available' | 'unavailable' | 'unknown';

/**
 * A request the gateway refused, or one the client gave up on. `code` is an `ErrorCode` of
 * the contract, or `disconnected` (the socket dropped first, or was not open) or `closed`
 * (`close()` was called). `data` is the refusal's `data`; with `capabilityDisabled` it is the
 * target's current `stateEvent`, and `view` the same as a {@link TargetView}.
 */
export class MediaBarError extends Error {
  readonly code: string;
  readonly data?: unknown;
  readonly view?: TargetView;

  constructor(code: string, message: string, data?: unknown, view?: TargetView) {
    super(message);
    this.name = 'MediaBarError';
    this.code = code;
    if (data !== undefined) this.data = data;
    if (view !== undefined) this.view = view;
  }
}

export interface MediaBarOptions {
  /** The gateway's MediaBar endpoint, `ws://host:port/mediabar/v1`. */
  url: string;
  /** The WebSocket class to use (default: the global one; Node 20 has none). */
  WebSocket?: typeof WebSocket;
  /** Reconnect delays: full jitter under `min(maxMs, initialMs * 2^attempt)`. */
  backoff?: { initialMs?: number; maxMs?: number };
  /** How long a request waits for its answer before it rejects with `timeout` (default 15000). */
  requestTimeoutMs?: number;
}

export const DEFAULT_REQUEST_TIMEOUT_MS = 15_000;

/** What the client uses of a WebSocket. */
interface SocketLike {
  readonly readyState: number;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: unknown) => void) | null;
  onerror: ((event: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}
type SocketClass = new (url: string) => SocketLike;

interface Pending {
  /** Called synchronously with the answer, before the next frame is looked at. */
  answer(frame: ServerMessage): void;
  fail(error: MediaBarError): void;
}

interface Events {
  connection: ConnectionStatus;
  service: ServiceStatus;
  unbound: string;
  event: ServerMessage;
}
type Listeners = { [K in keyof Events]: Set<(value: Events[K]) => void> };

type Timer = ReturnType<typeof setTimeout>;

/** Rebind failures worth retrying (the others end the binding for good). */
const TRANSIENT = new Set(['serviceUnavailable', 'rateLimited', 'timeout', 'internal']);

/** The error a refusal frame carries, or undefined when the frame is not a refusal. */
function refusal(frame: ServerMessage, views: ViewStore): MediaBarError | undefined {
  switch (frame.messageType) {
    case 'coreError':
      return new MediaBarError(frame.error.code, frame.error.message);
    case 'coreResponse':
      return frame.result === 'failure' ? new MediaBarError(frame.error.code, frame.error.message) : undefined;
    case 'resourceError': {
      const view = frame.data === undefined ? undefined : errorView(frame.data, views);
      return new MediaBarError(frame.error.code, frame.error.message, frame.data, view);
    }
    default:
      return undefined;
  }
}

function errorView(event: StateEvent, views: ViewStore): TargetView {
  const known = views.get(event.target);
  const since = known !== undefined && known.context.state === event.context.state ? known.since : Date.now();
  return viewOf(event, since);
}

function unexpected(frame: ServerMessage): MediaBarError {
  return new MediaBarError('internal', `unexpected answer: ${frame.messageType}`, frame);
}

/**
 * A MediaBar connection to the gateway. It connects at once and reconnects with exponential
 * backoff and full jitter whenever the socket drops, until {@link MediaBar.close}. A binding
 * made with {@link MediaBar.bind} is remembered: after a reconnect (or a `serverShutdown`)
 * the client binds again by itself, with `takeover: true`, since it was the binder.
 */
export class MediaBar {
  /** The bound session's view state, one entry per target. */
  readonly views = new ViewStore();

  private readonly url: string;
  private readonly Socket: SocketClass;
  private readonly timeoutMs: number;
  private readonly backoff: Backoff;
  private readonly rebindBackoff: Backoff;
  private readonly listeners: Listeners = {
    connection: new Set(),
    service: new Set(),
    unbound: new Set(),
    event: new Set(),
  };
  private socket: SocketLike | undefined;
  private status: ConnectionStatus = 'connecting';
  private serviceStatus: ServiceStatus = 'unknown';
  private session: string | undefined;
  /** The reference to bind again with after a reconnect; set by a successful bind. */
  private reference: string | undefined;
  private binding: Promise<unknown> | undefined;
  private readonly pending = new Map<string, Pending>();
  private readonly openWaiters = new Set<{ resolve(): void; reject(error: MediaBarError): void }>();
  private nextId = 0;
  private reconnectTimer: Timer | undefined;
  private rebindTimer: Timer | undefined;
  private closed = false;

  constructor(options: MediaBarOptions) {
    const Socket = (options.WebSocket ?? (globalThis as { WebSocket?: unknown }).WebSocket) as SocketClass | undefined;
    if (typeof Socket !== 'function') {
      throw new TypeError('no WebSocket class: pass options.WebSocket (Node 20 has no global WebSocket)');
    }
    this.url = options.url;
    this.Socket = Socket;
    this.timeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    this.backoff = new Backoff(options.backoff);
    this.rebindBackoff = new Backoff(options.backoff);
    this.connect();
  }

  /** `connecting` (also between attempts), `open`, or `closed` (dropped, or after `close()`). */
  get connection(): ConnectionStatus {
    return this.status;
  }

  /** The workflow manager as the gateway sees it; `unknown` until the gateway said. */
  get service(): ServiceStatus {
    return this.serviceStatus;
  }

  /** The bound session id (the bindResource response's `resourceId`), while bound. */
  get sessionId(): string | undefined {
    return this.session;
  }

  /**
   * Binds to the session `reference` names and resolves with its session id. The full view
   * state then arrives in {@link MediaBar.views}. Sent as soon as the socket is open (it
   * waits for a connection at most `requestTimeoutMs`). Rejects with a {@link MediaBarError}:
   * `alreadyBound` (bind again with `takeover: true` if it is your own earlier tab),
   * `unauthorized`, `sessionNotFound`, `serviceUnavailable`, `disconnected`, `timeout`...
   * A connection bound to another session is unbound first.
   */
  async bind(reference: string, options: { takeover?: boolean } = {}): Promise<string> {
    if (this.closed) throw new MediaBarError('closed', 'the MediaBar is closed');
    if (this.binding) await this.binding.catch(() => undefined);
    if (this.session !== undefined) {
      if (this.reference === reference) return this.session;
      await this.unbind();
    }
    this.reference = undefined;
    this.cancelRebind();
    await this.whenOpen();
    const bound = this.sendBind(reference, options.takeover ?? false);
    this.binding = bound;
    try {
      return await bound;
    } finally {
      if (this.binding === bound) this.binding = undefined;
    }
  }

  /** Releases the binding (and forgets it: no rebind follows). Resolves when not bound. */
  async unbind(): Promise<void> {
    if (this.binding) await this.binding.catch(() => undefined);
    this.reference = undefined;
    this.cancelRebind();
    const session = this.session;
    if (session === undefined) {
      this.views.clear();
      return;
    }
    try {
      await this.request(
        (requestId) => ({
          messageType: 'coreRequest',
          requestId,
          request: 'unbindResource',
          data: { serviceId: WORKFLOW_MANAGER, resourceId: session },
        }),
        (frame) => {
          const error = refusal(frame, this.views);
          if (error && error.code !== 'notBound') throw error;
          if (!error && frame.messageType !== 'coreResponse') throw unexpected(frame);
          this.session = undefined;
          this.views.clear();
        },
      );
    } catch (error) {
      // A dropped socket released the binding too.
      if (!(error instanceof MediaBarError && error.code === 'disconnected')) throw error;
      this.views.clear();
    }
  }

  /**
   * Asks the Interaction Processor to carry out `capability` on `target` of the bound
   * session. Resolves with its result data; rejects with a {@link MediaBarError}:
   * `notBound`, `unknownTarget`, `unknownCapability`, `capabilityDisabled` (with `view`, the
   * target's current view), `processorUnavailable`, `rejected`, `timeout`, `disconnected`...
   * The state change it causes arrives as usual, in {@link MediaBar.views}.
   */
  execute(target: string, capability: string, args: Record<string, string> = {}): Promise<Record<string, unknown>> {
    if (this.closed) return Promise.reject(new MediaBarError('closed', 'the MediaBar is closed'));
    const session = this.session;
    if (session === undefined) {
      return Promise.reject(
        new MediaBarError(this.status === 'open' ? 'notBound' : 'disconnected', 'not bound to a session'),
      );
    }
    return this.request(
      (requestId) => ({
        messageType: 'resourceRequest',
        requestId,
        serviceId: INTERACTION_PROCESSOR,
        resourceId: session,
        request: capability,
        data: { target, arguments: { ...args } },
      }),
      (frame) => {
        const error = refusal(frame, this.views);
        if (error) throw error;
        if (frame.messageType !== 'resourceResponse') throw unexpected(frame);
        return frame.data as Record<string, unknown>;
      },
    );
  }

  /** `connection`: the socket's status changed. */
  on(event: 'connection', f: (s: ConnectionStatus) => void): () => void;
  /** `service`: the workflow manager became available or unavailable (or unknown: no socket). */
  on(event: 'service', f: (s: ServiceStatus) => void): () => void;
  /**
   * `unbound`: the binding ended without `unbind()`: a `resourceUnbound` reason
   * (`takenOver`, `sessionEnded`, `expired`, `serverShutdown`), or the error code of an
   * automatic rebind the gateway refused (`sessionNotFound`, `unauthorized`...). Only after
   * `serverShutdown` does the client bind again by itself (once reconnected).
   */
  on(event: 'unbound', f: (reason: string) => void): () => void;
  /** `event`: every frame from the gateway, typed, after the client has handled it. */
  on(event: 'event', f: (frame: ServerMessage) => void): () => void;
  on<K extends keyof Events>(event: K, f: (value: Events[K]) => void): () => void {
    const set = this.listeners[event] as Set<(value: Events[K]) => void> | undefined;
    if (!set) throw new TypeError(`unknown event ${JSON.stringify(event)}`);
    const listener = (value: Events[K]) => f(value);
    set.add(listener);
    return () => {
      set.delete(listener);
    };
  }

  /** Closes the socket for good: no reconnect; pending requests reject with `closed`. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.reference = undefined;
    this.cancelRebind();
    if (this.reconnectTimer !== undefined) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    const socket = this.socket;
    this.socket = undefined;
    if (socket) {
      detach(socket);
      try {
        socket.close(1000, 'client closed');
      } catch {
        // already closing
      }
    }
    this.session = undefined;
    const error = new MediaBarError('closed', 'the MediaBar is closed');
    this.failAll(error);
    for (const waiter of [...this.openWaiters]) waiter.reject(error);
    this.setService('unknown');
    this.setStatus('closed');
  }

  // ---- connection ------------------------------------------------------------------------

  private connect(): void {
    this.reconnectTimer = undefined;
    if (this.closed) return;
    this.setStatus('connecting');
    let socket: SocketLike;
    try {
      socket = new this.Socket(this.url);
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.socket = socket;
    socket.onopen = () => {
      if (this.socket === socket) this.opened();
    };
    socket.onmessage = (event) => {
      if (this.socket === socket && typeof event.data === 'string') this.receive(event.data);
    };
    socket.onclose = () => {
      if (this.socket === socket) this.dropped();
    };
    socket.onerror = () => {
      // A close event follows every error.
    };
  }

  private opened(): void {
    this.backoff.reset();
    this.setStatus('open');
    this.request(
      (requestId) => ({ messageType: 'coreRequest', requestId, request: 'getServices' }),
      (frame) => {
        const error = refusal(frame, this.views);
        if (error) {
          if (error.code === 'serviceUnavailable') this.setService('unavailable');
          return;
        }
        if (frame.messageType === 'coreResponse' && frame.response === 'getServices' && frame.result === 'success') {
          const manager = frame.data.services.find((service) => service.serviceId === WORKFLOW_MANAGER);
          if (manager) this.setService(manager.status);
        }
      },
    ).catch(() => undefined);
    for (const waiter of [...this.openWaiters]) waiter.resolve();
    this.rebind();
  }

  private dropped(): void {
    const socket = this.socket;
    this.socket = undefined;
    if (socket) detach(socket);
    this.session = undefined;
    this.cancelRebind();
    this.failAll(new MediaBarError('disconnected', 'the connection to the gateway dropped'));
    this.setService('unknown');
    this.setStatus('closed');
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.closed || this.reconnectTimer !== undefined) return;
    this.setStatus('closed');
    this.reconnectTimer = setTimeout(() => this.connect(), this.backoff.next());
  }

  /** Resolves once the socket is open; rejects after `requestTimeoutMs` without one. */
  private whenOpen(): Promise<void> {
    if (this.status === 'open') return Promise.resolve();
    return new Promise((resolve, reject) => {
      const waiter = {
        resolve: () => {
          clearTimeout(timer);
          this.openWaiters.delete(waiter);
          resolve();
        },
        reject: (error: MediaBarError) => {
          clearTimeout(timer);
          this.openWaiters.delete(waiter);
          reject(error);
        },
      };
      const timer = setTimeout(
        () => waiter.reject(new MediaBarError('disconnected', `not connected to the gateway within ${this.timeoutMs} ms`)),
        this.timeoutMs,
      );
      this.openWaiters.add(waiter);
    });
  }

  // ---- requests --------------------------------------------------------------------------

  /**
   * Sends the frame `build` makes with a fresh requestId. `accept` runs synchronously on the
   * answer, before any later frame is handled; what it returns resolves the promise, what it
   * throws rejects it.
   */
  private request<T>(build: (requestId: string) => ClientMessage, accept: (frame: ServerMessage) => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const socket = this.socket;
      if (this.closed) return reject(new MediaBarError('closed', 'the MediaBar is closed'));
      if (!socket || this.status !== 'open') {
        return reject(new MediaBarError('disconnected', 'not connected to the gateway'));
      }
      this.nextId += 1;
      const requestId = String(this.nextId);
      const timer = setTimeout(() => {
        this.pending.delete(requestId);
        reject(new MediaBarError('timeout', `no answer within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      const settle = () => {
        clearTimeout(timer);
        this.pending.delete(requestId);
      };
      this.pending.set(requestId, {
        answer: (frame) => {
          settle();
          try {
            resolve(accept(frame));
          } catch (error) {
            reject(error);
          }
        },
        fail: (error) => {
          settle();
          reject(error);
        },
      });
      try {
        socket.send(JSON.stringify(build(requestId)));
      } catch {
        this.pending.get(requestId)?.fail(new MediaBarError('disconnected', 'the socket refused the frame'));
      }
    });
  }

  private failAll(error: MediaBarError): void {
    for (const pending of [...this.pending.values()]) pending.fail(error);
  }

  private sendBind(reference: string, takeover: boolean): Promise<string> {
    return this.request(
      (requestId) => ({
        messageType: 'coreRequest',
        requestId,
        request: 'bindResource',
        data: { serviceId: WORKFLOW_MANAGER, resourceId: reference, takeover },
      }),
      (frame) => {
        const error = refusal(frame, this.views);
        if (error) throw error;
        if (frame.messageType !== 'coreResponse' || frame.result !== 'success' || frame.response !== 'bindResource') {
          throw unexpected(frame);
        }
        // The full view state follows at once: what the store held is replaced by it.
        this.session = frame.data.resourceId;
        this.reference = reference;
        this.rebindBackoff.reset();
        this.views.clear();
        return frame.data.resourceId;
      },
    );
  }

  /** Binds the remembered reference again, if there is one and nothing is under way. */
  private rebind(): void {
    this.rebindTimer = undefined;
    const reference = this.reference;
    if (reference === undefined || this.binding || this.session !== undefined || this.status !== 'open') return;
    const attempt = this.sendBind(reference, true).then(
      () => undefined,
      (error: MediaBarError) => {
        if (this.reference !== reference || this.closed) return;
        if (error.code === 'disconnected' || error.code === 'closed') return; // the reconnect retries
        if (TRANSIENT.has(error.code)) {
          this.rebindTimer = setTimeout(() => this.rebind(), this.rebindBackoff.next());
          return;
        }
        this.reference = undefined;
        this.views.clear();
        this.emit('unbound', error.code);
      },
    );
    this.binding = attempt;
    void attempt.finally(() => {
      if (this.binding === attempt) this.binding = undefined;
    });
  }

  private cancelRebind(): void {
    if (this.rebindTimer !== undefined) clearTimeout(this.rebindTimer);
    this.rebindTimer = undefined;
  }

  // ---- frames ----------------------------------------------------------------------------

  private receive(text: string): void {
    let frame: ServerMessage;
    try {
      frame = parseServerMessage(text);
    } catch {
      return; // not a frame of the protocol: nothing to act on
    }
    switch (frame.messageType) {
      case 'coreResponse':
      case 'resourceResponse':
      case 'resourceError':
        this.pending.get(frame.requestId)?.answer(frame);
        break;
      case 'coreError':
        if (frame.requestId !== undefined) this.pending.get(frame.requestId)?.answer(frame);
        break;
      case 'resourceEvent':
        if (this.session !== undefined && frame.resourceId === this.session) this.views.apply(frame.event);
        break;
      case 'coreEvent':
        this.unbound(frame);
        break;
      case 'serviceEvent':
        this.serviceEvent(frame);
        break;
    }
    this.emit('event', frame);
  }

  private unbound(frame: CoreEvent): void {
    if (this.session === undefined || frame.data.resourceId !== this.session) return;
    this.session = undefined;
    // Only a gateway shutting down leaves the binding ours: bind again once reconnected.
    if (frame.data.reason !== 'serverShutdown') this.reference = undefined;
    this.views.clear();
    this.emit('unbound', frame.data.reason);
  }

  private serviceEvent(frame: ServiceEvent): void {
    const available = frame.event === 'service.available';
    // A bound client hears service.available once its session is bound again, and the full
    // view state follows at once.
    if (available && this.session !== undefined) this.views.clear();
    this.setService(available ? 'available' : 'unavailable');
    if (available) {
      this.cancelRebind();
      this.rebind();
    }
  }

  // ---- listeners -------------------------------------------------------------------------

  private setStatus(status: ConnectionStatus): void {
    if (this.status === status) return;
    this.status = status;
    this.emit('connection', status);
  }

  private setService(status: ServiceStatus): void {
    if (this.serviceStatus === status) return;
    this.serviceStatus = status;
    this.emit('service', status);
  }

  private emit<K extends keyof Events>(event: K, value: Events[K]): void {
    for (const listener of [...this.listeners[event]] as Array<(value: Events[K]) => void>) callSafely(listener, value);
  }
}

function detach(socket: SocketLike): void {
  socket.onopen = null;
  socket.onmessage = null;
  socket.onclose = null;
  socket.onerror = null;
}
