import type { ChildProcess } from 'node:child_process';

/** SIGKILLs each process that is still running and resolves once all have exited. */
export async function killProcesses(procs: Iterable<ChildProcess>): Promise<void> {
  await Promise.all(
    [...procs].map((proc) =>
      proc.exitCode !== null || proc.signalCode !== null
        ? undefined
        : new Promise<void>((resolve) => {
            proc.once('exit', () => resolve());
            proc.kill('SIGKILL');
          }),
    ),
  );
}
