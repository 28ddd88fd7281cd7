/**
 * The hourly cleanup alarm of a Durable Object whose rows lapse (reservations, idempotency records): set
 * once when something is written that will need cleaning, remembered in memory so the hot path does not
 * read storage, and set again by the cleanup run while anything is left.
 */
export class CleanupAlarm {
  private scheduled = false;

  constructor(
    private readonly storage: DurableObjectStorage,
    private readonly everyMs = 3_600_000,
  ) {}

  /** Ensures an alarm is set (reads storage once per object lifetime, without waiting for it). */
  ensure(now: number): void {
    if (this.scheduled) return;
    this.scheduled = true;
    void this.storage.getAlarm().then((at) => {
      if (at === null) return this.storage.setAlarm(now + this.everyMs);
    });
  }

  /** After a cleanup run: the next alarm while `pending` rows are left; none otherwise. */
  async ranWith(pending: number, now: number): Promise<void> {
    this.scheduled = pending > 0;
    if (pending > 0) await this.storage.setAlarm(now + this.everyMs);
  }
}
