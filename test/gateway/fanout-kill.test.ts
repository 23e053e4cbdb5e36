/**
 * A fanout interrupted by killing the gateway process (SIGKILL: no shutdown code runs) completes
 * after the gateway is started again on the same data directory: the job, its members and the
 * results written so far are in LevelDB; the rest run after the restart, and the server gets one
 * FanoutComplete alert with every member.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startDeployment, type Deployment } from '../support/gateways.ts';
import { completion, readLeaf, readResults, startJob } from '../support/fanout.ts';
import { startGwmo, type GwmoProcess } from '../support/processes.ts';

let d: Deployment | undefined;
let procs: GwmoProcess[] = [];
let dir: string | undefined;
afterEach(async () => {
  for (const p of procs) await p.stop();
  procs = [];
  await d?.close();
  d = undefined;
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('fanout across a gateway crash', () => {
  it('a job interrupted by SIGKILL completes after the gateway restarts', { timeout: 90_000 }, async () => {
    dir = await mkdtemp(join(tmpdir(), 'gwmo-fkill-'));
    d = await startDeployment([{ deviceId: 'gw-k', username: 'gw-k', secret: 'gw-k-pw' }]);
    const cfg = join(dir, 'gw-k.yaml');
    await writeFile(
      cfg,
      [
        'id: gw-k',
        'parent:',
        `  url: ${d.server.dmUrl}`,
        `  serverId: ${d.server.config.serverId}`,
        '  username: gw-k',
        '  secret: gw-k-pw',
        '  authType: md5',
        `  serverSecret: ${d.server.config.serverSecret}`,
        '  serverAuthType: md5',
        'serverId: gw-k-south',
        'serverSecret: gw-k-south-pw',
        'newDeviceAlert: false',
        'adapters:',
        '  - { type: sim, generate: { count: 40, prefix: k, kind: thermostat }, latencyMs: 150 }',
        '',
      ].join('\n'),
    );
    const start = () => startGwmo(['gateway', '--config', cfg, '--data', join(dir!, 'gw-k')], /southbound DM endpoint (http:\/\/\S+)/);
    const first = await start();
    procs.push(first);
    const job = await startJob(
      d.server,
      'gw-k',
      'setpoints',
      { groupId: '*', commands: [{ cmd: 'Replace', uri: './Point/Setpoint', data: '19.5' }, { cmd: 'Get', uri: './Point/Setpoint' }], policy: { maxConcurrency: 2 } },
      'c-kill',
    );
    expect(job.status, JSON.stringify(job)).toBe(200);
    // Let some members finish (and be written), then kill the process outright.
    for (let i = 0; i < 100; i++) {
      if (Number(await readLeaf(d.server, 'gw-k', './GwMO/Fanout/setpoints/Progress/Succeeded')) >= 6) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const before = Number(await readLeaf(d.server, 'gw-k', './GwMO/Fanout/setpoints/Progress/Succeeded'));
    expect(before).toBeGreaterThanOrEqual(6);
    expect(before).toBeLessThan(40);
    await first.stop('SIGKILL');
    procs = [];

    const again = await start();
    procs.push(again);
    const done = await completion(d.server, 'gw-k', 'c-kill', 60_000);
    expect(done.data).toContain('<State>30</State>');
    expect(again.output()).toMatch(/resuming fanout job setpoints: \d+\/40 members done/);
    const rows = Object.values(await readResults(d.server, 'gw-k', 'setpoints'));
    expect(rows).toHaveLength(40);
    for (const r of rows) {
      expect(r.status, r.deviceId).toBe(200);
      expect(r.cmds['2']?.data, r.deviceId).toBe('19.5');
    }
    // One completion alert for the job, not one per life of the gateway.
    const alerts = (await d.server.queue.listAlerts('gw-k')).filter((a) => a.correlator === 'c-kill');
    expect(alerts).toHaveLength(1);
  });
});
