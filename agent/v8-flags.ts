import { setFlagsFromString } from 'node:v8';

/**
 * The V8 flags `meteorzx agent` sets on itself as it starts, whichever way
 * it was launched (bin/meteorzx.js, the packaged `meteorzx-agent`, the
 * gateway package's full CLI). The agent runs on small edge boxes with a
 * memory budget (DESIGN §7): under a steady load V8 grows the young
 * generation to 2 × 16 MB semi-spaces, and `--semi-space-growth-factor=1`
 * holds it at the size it has when the command starts (1–2 MB semi-spaces).
 * Measured end to end, that is 40–65 MB less RSS under load for 15–25 % more
 * CPU per event; in the buffer bench, 45 % more CPU (docs/performance.md,
 * "Agent"). Which matters more is the lead's call: this keeps RSS.
 *
 * Set here, at run time: the growth factor is read at every resize. On
 * node's command line (or NODE_OPTIONS) it has no effect — V8's heap set-up
 * raises a factor below 2 to 2, and the young generation still grows to
 * 32 MB (measured) — and heap-size flags such as --max-semi-space-size, read
 * once at heap set-up, would need a second process. METEORZX_AGENT_V8_FLAGS
 * replaces the list ('' keeps V8's defaults).
 */
export const AGENT_V8_FLAGS = '--semi-space-growth-factor=1';

/** Applies AGENT_V8_FLAGS, or METEORZX_AGENT_V8_FLAGS when set. */
export function applyAgentV8Flags(env: NodeJS.ProcessEnv = process.env): void {
  for (const flag of (env.METEORZX_AGENT_V8_FLAGS ?? AGENT_V8_FLAGS).split(/\s+/).filter(Boolean)) setFlagsFromString(flag);
}
