// One run at a time of a read that must be at least as fresh as the moment it was asked for (the CRL catching
// up with the revocation feed, a key ring re-read after a rotation). A caller arriving while a run is under way
// cannot know whether that run started after the change it wants to see, so it joins the next run, which
// every such caller shares: at most one run and one follow-up exist at any time.
export class FreshRun<T> {
  readonly #fn: () => Promise<T>;
  #running: Promise<T> | undefined;
  #next: Promise<T> | undefined;

  constructor(fn: () => Promise<T>) {
    this.#fn = fn;
  }

  /** True while a run is under way. */
  get busy(): boolean {
    return this.#running !== undefined;
  }

  run(): Promise<T> {
    if (!this.#running) return this.#start();
    this.#next ??= this.#running
      .catch(() => undefined)
      .then(() => {
        this.#next = undefined;
        return this.#start();
      });
    return this.#next;
  }

  /** Waits for the run and follow-up under way, if any (their outcomes are ignored). */
  async settled(): Promise<void> {
    await this.#next?.catch(() => undefined);
    await this.#running?.catch(() => undefined);
  }

  #start(): Promise<T> {
    const run = this.#fn().finally(() => {
      if (this.#running === run) this.#running = undefined;
    });
    this.#running = run;
    return run;
  }
}
