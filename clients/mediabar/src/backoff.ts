// Reconnect delays: exponential backoff with full jitter.

export interface BackoffOptions {
  /** The ceiling of the first delay, in ms (default 500). */
  initialMs?: number;
  /** The largest ceiling, in ms (default 15000). */
  maxMs?: number;
}

export const DEFAULT_BACKOFF = { initialMs: 500, maxMs: 15_000 } as const;

/**
 * Attempt `n` (from 0) waits a uniformly random time in `[0, min(maxMs, initialMs * 2^n))`:
 * "full jitter", so that the clients of a gateway that restarts do not all come back at once.
 */
export class Backoff {
  readonly initialMs: number;
  readonly maxMs: number;
  private count = 0;
  private readonly random: () => number;

  constructor(options: BackoffOptions = {}, random: () => number = Math.random) {
    this.initialMs = Math.max(0, options.initialMs ?? DEFAULT_BACKOFF.initialMs);
    this.maxMs = Math.max(this.initialMs, options.maxMs ?? DEFAULT_BACKOFF.maxMs);
    this.random = random;
  }

  /** How many delays were handed out since the last reset. */
  get attempt(): number {
    return this.count;
  }

  /** The ceiling of attempt `n`'s delay. */
  ceiling(n: number): number {
    return Math.min(this.maxMs, this.initialMs * 2 ** Math.min(n, 52));
  }

  /** The next delay, in ms. */
  next(): number {
    const ceiling = this.ceiling(this.count);
    this.count += 1;
    return Math.floor(this.random() * ceiling);
  }

  /** Back to the first attempt (after a connection that worked). */
  reset(): void {
    this.count = 0;
  }
}
