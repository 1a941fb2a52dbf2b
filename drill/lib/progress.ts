// Human-readable progress on stderr: one line when a step starts, a heartbeat every few seconds
// while it runs, one line when it ends, each with the seconds since the drill started. stdout is
// kept for the final JSON report.
const heartbeatMs = 10_000;

export class Progress {
  private readonly t0 = Date.now();
  /** Seconds each finished step took, by step title (for the report). */
  readonly stepSeconds: Record<string, number> = {};

  constructor(private readonly write: (line: string) => void = (l) => process.stderr.write(l + "\n")) {}

  elapsed(): number {
    return (Date.now() - this.t0) / 1000;
  }

  line(text: string): void {
    this.write(`[${this.elapsed().toFixed(1).padStart(6)}s] ${text}`);
  }

  /** Run one step, reporting its start, progress and outcome. */
  async step<T>(title: string, fn: () => Promise<T>): Promise<T> {
    const start = Date.now();
    this.line(`${title} ...`);
    const beat = setInterval(() => this.line(`  ${title}: still running (${((Date.now() - start) / 1000).toFixed(0)}s)`), heartbeatMs);
    try {
      const value = await fn();
      const secs = (Date.now() - start) / 1000;
      this.stepSeconds[title] = secs;
      this.line(`${title}: done in ${secs.toFixed(1)}s`);
      return value;
    } catch (err) {
      this.line(`${title}: FAILED after ${((Date.now() - start) / 1000).toFixed(1)}s`);
      throw err;
    } finally {
      clearInterval(beat);
    }
  }
}
