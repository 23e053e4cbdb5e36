/**
 * Running `gwmo` commands as separate OS processes, as a user does in separate terminals.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** A long-running gwmo process and the first match of its readiness pattern. */
export interface GwmoProcess {
  proc: ChildProcess;
  match: RegExpExecArray;
  output(): string;
  /** Stops it (SIGINT, or the given signal) and waits for it to exit. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** Starts `gwmo <args>` (inside network namespace `netns` if given) and resolves once stdout matches `ready`. */
export function startGwmo(args: string[], ready: RegExp, timeoutMs = 20_000, netns?: string): Promise<GwmoProcess> {
  const argv = [process.execPath, 'bin/gwmo.js', ...args];
  const proc = netns
    ? spawn('ip', ['netns', 'exec', netns, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] })
    : spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stderr!.on('data', (d) => (out += d));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`gwmo ${args[0]} not ready:\n${out}`)), timeoutMs);
    const onExit = (code: number | null): void => reject(new Error(`gwmo ${args[0]} exited ${code}:\n${out}`));
    proc.once('exit', onExit);
    proc.stdout!.on('data', (d) => {
      out += d;
      const m = ready.exec(out);
      if (m) {
        clearTimeout(timer);
        proc.off('exit', onExit);
        resolve({
          proc,
          match: m,
          output: () => out,
          stop: (signal = 'SIGINT') =>
            new Promise<void>((res) => {
              if (proc.exitCode !== null || proc.signalCode !== null) return res();
              proc.once('exit', () => res());
              proc.kill(signal);
            }),
        });
      }
    });
  });
}

/** Runs a gwmo command to completion; never throws, returns the exit code and output. */
export async function gwmo(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(process.execPath, ['bin/gwmo.js', ...args], { timeout: 90_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? String(err) };
  }
}
