/**
 * The stale-response guard. A view asks for data through one `LatestRequest`; starting a new request
 * aborts the one before, and a response that arrives after the user moved on (another patient,
 * route, tab or filter) is dropped, never shown: `run` answers STALE for it, whether it succeeded or
 * failed. A view cancels its guard when it unmounts.
 */

export const STALE: unique symbol = Symbol("stale");
export type Stale = typeof STALE;

export interface RequestTicket {
  readonly signal: AbortSignal;
  /** True while this request is the latest one and has not been cancelled. */
  isCurrent(): boolean;
}

export class LatestRequest {
  private controller: AbortController | null = null;
  private generation = 0;

  /** Start a request: the previous one is aborted and can no longer be current. */
  begin(): RequestTicket {
    this.controller?.abort();
    const controller = new AbortController();
    this.controller = controller;
    const generation = ++this.generation;
    return {
      signal: controller.signal,
      isCurrent: () => generation === this.generation && !controller.signal.aborted,
    };
  }

  /** Drop whatever is in flight (the view is leaving). */
  cancel(): void {
    this.controller?.abort();
    this.controller = null;
    this.generation += 1;
  }

  /**
   * Run `work` as the latest request. Its value, or STALE when a later request started (or the guard
   * was cancelled) before it settled. An error of a current request is thrown; of a stale one, dropped.
   */
  async run<T>(work: (signal: AbortSignal) => Promise<T>): Promise<T | Stale> {
    const ticket = this.begin();
    try {
      const value = await work(ticket.signal);
      return ticket.isCurrent() ? value : STALE;
    } catch (error) {
      if (!ticket.isCurrent()) return STALE;
      throw error;
    }
  }
}
