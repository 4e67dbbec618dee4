// A controllable clock for tests: pass `fake.clock` wherever a Clock is injected, then move time by hand.
import type { Clock } from '../../src/store/types.ts';

export class FakeClock {
  #ms: number;

  /** Starts at `startMs`, by default the current second (so that real-time key TTLs stay sensible). */
  constructor(startMs: number = Math.floor(Date.now() / 1000) * 1000) {
    this.#ms = startMs;
  }

  /** The Clock to inject. */
  readonly clock: Clock = () => this.#ms;

  now(): number {
    return this.#ms;
  }

  /** Epoch seconds, as the store sees them. */
  seconds(): number {
    return Math.floor(this.#ms / 1000);
  }

  advance(ms: number): void {
    this.#ms += ms;
  }

  set(ms: number): void {
    this.#ms = ms;
  }
}
