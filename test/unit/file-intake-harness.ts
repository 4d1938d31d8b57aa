import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach } from 'vitest';
import { DEFAULT_LIMITS } from '../../protocols/index.js';
import { LevelBuffer } from '../../agent/buffer/index.js';
import { FileIntake, type FileIntakeOptions } from '../../agent/intake/files/file-intake.js';
import type { FileSpec } from '../../agent/intake/files/file-spec.js';
import { TrackedFile } from '../../agent/intake/files/tracked-file.js';

/**
 * Set-up shared by the FileIntake unit tests of waiting paths: each test gets
 * a fresh temp dir with `logs/` and an open buffer (exported as live
 * bindings, set by `useFileIntakeHarness`'s hooks), and everything a test
 * started or stalled is undone after it.
 */
export let dir: string;
export let logs: string;
export let buffer: LevelBuffer;
const intakes: FileIntake[] = [];
const realReadBatch = TrackedFile.prototype.readBatch;

/** Registers the hooks that make and remove each test's dir, buffer and intakes. */
export function useFileIntakeHarness(prefix: string): void {
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), prefix));
    logs = join(dir, 'logs');
    await mkdir(logs);
    buffer = new LevelBuffer({ dataDir: join(dir, 'data'), id: 'host-1', durability: 'os', commitIntervalMs: 1 });
    await buffer.open();
  });

  afterEach(async () => {
    unstallReads();
    for (const i of intakes.splice(0)) await i.close();
    await buffer.close();
    await rm(dir, { recursive: true, force: true });
  });
}

export function spec(over: Partial<FileSpec> = {}): FileSpec {
  return { path: 'logs/*.log', format: 'line', startAt: 'beginning', type: 'log.line', maxLineBytes: 64 * 1024, ...over };
}

export async function startIntake(files: FileSpec[], over: Partial<FileIntakeOptions> = {}): Promise<FileIntake> {
  const intake = new FileIntake({ files, buffer, limits: DEFAULT_LIMITS, pollMs: 10, discoverMs: 20, rotateWaitMs: 100, cwd: dir, ...over });
  intakes.push(intake);
  await intake.start();
  return intake;
}

export async function stopIntake(intake: FileIntake): Promise<void> {
  await intake.close();
  intakes.splice(intakes.indexOf(intake), 1);
}

export async function events(): Promise<{ type: string; data?: Record<string, unknown> }[]> {
  return (await buffer.read(0, 1_000_000)) as { type: string; data?: Record<string, unknown> }[];
}

export async function lines(): Promise<string[]> {
  return (await events()).filter((e) => e.type === 'log.line').map((e) => String(e.data?.line));
}

export async function waitFor(probe: () => Promise<boolean> | boolean, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Reads of files under logs/ find nothing until released: the file holding the only handle never reaches its end, so the others wait. */
export function stallReads(): () => void {
  let stalled = true;
  TrackedFile.prototype.readBatch = function (this: TrackedFile, ...args: Parameters<TrackedFile['readBatch']>) {
    return stalled && this.path.startsWith(`${logs}/`) ? Promise.resolve({ lines: [], bytes: 0 }) : realReadBatch.apply(this, args);
  };
  return () => {
    stalled = false;
  };
}

/** Puts TrackedFile's own reads back. */
export function unstallReads(): void {
  TrackedFile.prototype.readBatch = realReadBatch;
}
