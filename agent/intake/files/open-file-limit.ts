import { openFileLimit } from '../../../common/open-file-limit.js';

export { openFileLimit };

/**
 * The default of `intake.maxOpenFiles`: a quarter of the process's open-file limit, so the files followed
 * never take the descriptors the agent's listeners, LevelDB buffer and push connections need. On a legacy
 * host with `ulimit -n 1024` that is 256; under systemd (soft 1024, hard 524288, which Node raises the soft
 * limit to at start) it is large enough to be no limit at all, as Filebeat's `harvester_limit: 0`.
 */
export function defaultMaxOpenFiles(limit = openFileLimit()): number {
  return Math.max(8, Math.floor(limit / 4));
}

