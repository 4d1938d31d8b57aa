/** Ranges named one by one on stderr; past it, only counted (the summary has the total). */
const NAMED_RANGES = 10;

/**
 * The seqs `meteorzx pull` stepped over: holes in the agent's buffer (blocks it found damaged, docs/pull.md
 * "Holes"), which its answers leave out. The agent records the loss with a `meteorzx.gap` event only for
 * the part it had not yet delivered, and that event usually comes after the pulled range; so without a
 * word here an output file would simply lack those seqs. Each range is named as it is found (the first
 * few), and the summary gives them all in numbers.
 */
export class PullHoles {
  private expected: number;
  private seqs = 0;
  private readonly ranges: [number, number][] = [];
  /** Ranges already named: a range is named once a line after it has come (it can grow until then). */
  private named = 0;

  constructor(
    after: number,
    private readonly warn: (line: string) => void,
  ) {
    this.expected = after + 1;
  }

  /** One line of an answer, by its seq; a seq past the next one expected means a hole before it. */
  line(seq: number): void {
    if (seq > this.expected) this.hole(this.expected, seq - 1);
    this.expected = Math.max(this.expected, seq + 1);
    this.nameClosed();
  }

  /**
   * An answer with no line that says every seq up to `to` is a hole: X-Meteorzx-Holes-To, or an X-Last-Seq
   * the answer ended short of (the hole was found by that very read, and the agent ends such an answer whole).
   */
  holesTo(to: number): void {
    if (to >= this.expected) this.hole(this.expected, to);
    this.expected = Math.max(this.expected, to + 1);
  }

  /** One line for the end of the pull; undefined when nothing was stepped over. */
  summary(): string | undefined {
    this.nameClosed();
    if (this.ranges.length === 0) return undefined;
    const shown = this.ranges.slice(0, NAMED_RANGES).map(([from, to]) => (from === to ? `${from}` : `${from}-${to}`));
    const more = this.ranges.length > NAMED_RANGES ? ` and ${this.ranges.length - NAMED_RANGES} more` : '';
    return `${this.seqs} seq${this.seqs === 1 ? '' : 's'} in ${this.ranges.length} range${this.ranges.length === 1 ? '' : 's'} (${shown.join(', ')}${more}) were holes in the agent's buffer and are not in the output`;
  }

  get holes(): readonly (readonly [number, number])[] {
    return this.ranges;
  }

  private hole(from: number, to: number): void {
    this.seqs += to - from + 1;
    const last = this.ranges.at(-1);
    // Met over two answers (one ending in it, the next stepping over its rest): one hole.
    if (last !== undefined && last[1] === from - 1 && this.named < this.ranges.length) last[1] = to;
    else this.ranges.push([from, to]);
  }

  private nameClosed(): void {
    for (; this.named < this.ranges.length; this.named += 1) {
      const [from, to] = this.ranges[this.named] as [number, number];
      if (this.named >= NAMED_RANGES) continue;
      this.warn(`seqs ${from}-${to} are not in the agent's buffer: it found them damaged (its meteorzx.gap event, reason buffer-corrupt, names the part it had not delivered); no lines for them in the output`);
    }
  }
}
