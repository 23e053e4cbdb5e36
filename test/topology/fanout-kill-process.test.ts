/**
 * Fault with real processes (issue "Security and reliability", point 4): a child gateway process
 * killed with SIGKILL in the middle of a fanout that its parent delegated to it. The operator's
 * fanout ends with one consolidated response — the child's members completed after its restart
 * (the job is resumed from LevelDB) or marked failed — and never hangs.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { parseTopology, startTopology, type RunningTopology } from '../../src/topology/index.ts';
import { memoryLogger, tempDir } from '../support/fixtures.ts';
import { until } from '../support/gateways.ts';
import { gwmo } from '../support/processes.ts';

let run: RunningTopology | undefined;
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  await run?.stop();
  run = undefined;
  for (const c of cleanups.splice(0)) await c();
});

const TOPOLOGY = `version: 1
name: killed
server: { listen: 127.0.0.1:0 }
gateways:
  - id: gw-top
    fanout: { timeout: 8, maxConcurrency: 4 }
    groups:
      - { id: all, members: [{ deviceId: gw-child, subGroup: sensors }] }
    gateways:
      - id: gw-child
        fanout: { timeout: 8, maxConcurrency: 2 }
        adapters:
          - { type: sim, latencyMs: 300, generate: { count: 12, prefix: s-, kind: sensor } }
        groups:
          - { id: sensors, filter: Mod=sim-sensor }
`;

describe('a child gateway process killed mid-fanout', () => {
  it('the fanout still ends with one consolidated response, never a hang', async () => {
    const tmp = await tempDir('gwmo-kill-fanout-');
    cleanups.push(tmp.cleanup);
    run = await startTopology(parseTopology(TOPOLOGY, 'killed.yaml'), { dataDir: tmp.dir, logger: memoryLogger('k').logger, processes: true });
    const child = run.parts.get('gw-child')!;
    await until(async () => (await child.associationCount()) === 12, 'the 12 sensors', 20_000);
    const server = run.urls.api!.replace(/\/api$/, '');
    const t0 = Date.now();
    const fanout = gwmo(['fanout', 'gw-top', '--group', 'all', '--cmd', 'Get ./DevInfo/Mod', '--server', server, '--json']);
    // 12 members, 2 at a time, 300 ms each: the child is busy for about 2 s. Kill it in the middle.
    await new Promise((r) => setTimeout(r, 1200));
    process.kill(child.pid, 'SIGKILL');
    const r = await fanout;
    const elapsed = Date.now() - t0;
    expect(r.stderr + r.stdout).not.toMatch(/still running after/);
    const job = JSON.parse(r.stdout) as { state: string; Total: number; Succeeded: number; Failed: number; members: { deviceId: string; status: number }[] };
    expect(['completed', 'completed with failures']).toContain(job.state);
    // Every member has an outcome; none is silently missing.
    expect(job.members.length).toBeGreaterThan(0);
    expect(job.members.every((m) => Number.isInteger(m.status) && m.status > 0)).toBe(true);
    if (job.state === 'completed') {
      expect(job.members.map((m) => m.deviceId).sort()).toEqual(Array.from({ length: 12 }, (_, i) => `urn:dev:sim:s-${i + 1}`).sort());
    } else {
      expect(job.members.some((m) => m.status >= 300)).toBe(true);
    }
    expect(elapsed).toBeGreaterThan(1200); // the answer came after the kill
    expect(elapsed).toBeLessThan(60_000);
    // The child came back (supervised restart) and serves again.
    await until(() => (run!.parts.get('gw-child')?.pid ?? child.pid) !== child.pid, 'gw-child restarted', 30_000);
  }, 90_000);
});
