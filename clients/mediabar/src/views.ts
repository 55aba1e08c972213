// The view store: each target's latest entire view state, as the toolbar renders it.

import type { StateEvent } from './protocol.js';

export type CapabilityState = 'enabled' | 'disabled';

/** One target's view state, as the last `state.updated` event for it carried it. */
export interface TargetView {
  /** `<sessionId>`, `<sessionId>.<channelId>` or `<sessionId>.<channelId>.<interactionId>`. */
  target: string;
  /** Labels only (`media`, `state`, `reason`...): never derive button states from it. */
  context: Record<string, string>;
  /** Every capability the profile defines for the target; one absent is switched off: hide it. */
  capabilities: Record<string, CapabilityState>;
  /** The capability names in catalogue order: render the buttons in this order. */
  order: string[];
  /** `Date.now()` when `context.state` last changed (for "ready for 0:42" timers). */
  since: number;
}

/** The state an interaction (or a removed channel) reports in its last event. */
export const ENDED_STATE = 'ended';

/** Builds a target's view from its `state.updated` event; `since` as given. */
export function viewOf(event: StateEvent, since: number): TargetView {
  const capabilities: Record<string, CapabilityState> = {};
  const order: string[] = [];
  for (const { name, type } of event.data) {
    if (!(name in capabilities)) order.push(name);
    capabilities[name] = type;
  }
  return { target: event.target, context: { ...event.context }, capabilities, order, since };
}

type Listener = (target: string, view: TargetView | undefined) => void;

/** @internal Calls `f`; an exception in a listener is reported on its own and stops nothing else. */
export function callSafely<A extends unknown[]>(f: (...args: A) => void, ...args: A): void {
  try {
    f(...args);
  } catch (error) {
    setTimeout(() => {
      throw error;
    }, 0);
  }
}

/**
 * The latest view state of every target of the bound session. Each `state.updated` event
 * replaces its target's whole view (never merges); a target whose last event says
 * `state: ended` is removed.
 */
export class ViewStore {
  private readonly views = new Map<string, TargetView>();
  private readonly listeners = new Set<Listener>();

  /** The target's current view, or `undefined` when there is none. */
  get(target: string): TargetView | undefined {
    return this.views.get(target);
  }

  /** Every target with a view, in the order they first appeared. */
  targets(): string[] {
    return [...this.views.keys()];
  }

  /**
   * Calls `f(target, view)` after each change, `view` `undefined` when the target was
   * removed. Returns the function that unsubscribes.
   */
  subscribe(f: (target: string, view: TargetView | undefined) => void): () => void {
    const listener: Listener = (target, view) => f(target, view);
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  /** @internal Replaces the event's target's view, or removes it when it has ended. */
  apply(event: StateEvent, now: number = Date.now()): void {
    const previous = this.views.get(event.target);
    if (event.context.state === ENDED_STATE) {
      if (previous === undefined) return;
      this.views.delete(event.target);
      this.notify(event.target, undefined);
      return;
    }
    const since = previous !== undefined && previous.context.state === event.context.state ? previous.since : now;
    const view = viewOf(event, since);
    this.views.set(event.target, view);
    this.notify(event.target, view);
  }

  /** @internal Removes every view, telling the listeners of each. */
  clear(): void {
    const targets = this.targets();
    this.views.clear();
    for (const target of targets) this.notify(target, undefined);
  }

  private notify(target: string, view: TargetView | undefined): void {
    for (const listener of [...this.listeners]) callSafely(listener, target, view);
  }
}
