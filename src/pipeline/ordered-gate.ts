/**
 * Lets concurrent work on a stream's frames pass a section in admission order: ticket n enters
 * only after tickets 0..n-1 have left or been skipped. Frames are detected in parallel but tracked
 * and emitted in order.
 */
export class OrderedGate {
  private next = 0;
  private readonly waiters = new Map<number, () => void>();
  private readonly skipped = new Set<number>();

  async enter(ticket: number): Promise<void> {
    if (ticket === this.next) return;
    await new Promise<void>((resolve) => this.waiters.set(ticket, resolve));
  }

  leave(ticket: number): void {
    if (ticket !== this.next) throw new Error(`gate: ticket ${ticket} left out of turn (next is ${this.next})`);
    this.advance();
  }

  /** The ticket's frame never reaches the section (dropped or failed earlier). */
  skip(ticket: number): void {
    if (ticket === this.next) this.advance();
    else if (ticket > this.next) this.skipped.add(ticket);
  }

  private advance(): void {
    this.next++;
    while (this.skipped.delete(this.next)) this.next++;
    const wake = this.waiters.get(this.next);
    if (wake) {
      this.waiters.delete(this.next);
      wake();
    }
  }
}
