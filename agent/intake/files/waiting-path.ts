import { open } from 'node:fs/promises';
import type { ExtraOp } from '../../buffer/types.js';
import { fileIdOf, fileKey, fingerprint, fingerprintMatches, parseFileRecord, pathKey, type FileRecord, type PathRecord } from './checkpoint.js';
import { markSiblingsSeen, type ResumeContext } from './resume.js';

/**
 * The records that make a path waiting for a handle (intake.maxOpenFiles) resume, after a restart, where
 * it would have started had it been opened when found: its file checkpointed at `fromEnd` (startAt: end on
 * the first scan) or at 0 (startAt: beginning, or a file that appeared while the agent ran), and a path
 * record naming that file, its rotated generations present now marked seen (listed as done), as for a path
 * followed at once. Before, a waiting path had no record: killed or restarted before its turn, the agent
 * took it for a file found at start — `startAt: end` skipped the lines written since it was first found,
 * and those of a file that appeared while it ran. None (an empty list) when the file cannot be opened, is
 * followed already under another name (a glob matching a rotated generation being read), or already has a
 * checkpoint of its own: where reading starts is then decided as for any path, when its turn comes.
 *
 * The file is opened for a moment to take its fingerprint, as a look at a rotated sibling does: one handle
 * over `maxOpenFiles` at most (docs/intake-files.md, Open files).
 */
export async function waitingPathRecords(ctx: ResumeContext, path: string, fromEnd: boolean): Promise<ExtraOp[]> {
  const fh = await open(path, 'r').catch(() => undefined);
  if (fh === undefined) return [];
  let file: FileRecord;
  let id: string;
  try {
    const st = await fh.stat({ bigint: true });
    id = fileIdOf(st);
    const size = Number(st.size);
    if (ctx.open.has(id)) return [];
    const saved = parseFileRecord(await ctx.getMeta(fileKey(id)));
    if (saved !== undefined && size >= saved.offset && (await fingerprintMatches(fh, saved.fp))) return [];
    file = { path, offset: fromEnd ? size : 0, size, fp: await fingerprint(fh, size) };
  } finally {
    await fh.close();
  }
  const { ops, finished } = await markSiblingsSeen(ctx, path);
  const record: PathRecord = { current: id, draining: [], checkedAt: ctx.now() };
  if (finished.length > 0) record.done = finished;
  return [...ops, { key: fileKey(id), value: JSON.stringify(file) }, { key: pathKey(path), value: JSON.stringify(record) }];
}
