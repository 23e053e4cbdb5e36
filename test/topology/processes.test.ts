/**
 * `gwmo up --processes` / `startTopology({ processes: true })`: each gateway in its own OS process.
 * Commands reach devices through gateways in other processes, the visualizer's hub mirrors their
 * actors into one route tree, a killed gateway process is restarted with its subtree, a reload
 * adds and removes gateway processes, stopping ends every process, and gateway processes whose `gwmo up` is killed stop by themselves.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { InspectionHub } from '../../src/inspect/hub.ts';
import { parseTopology, startTopology, type RunningTopology } from '../../src/topology/index.ts';
import { memoryLogger, tempDir } from '../support/fixtures.ts';
import { until } from '../support/gateways.ts';
import { startGwmo, type GwmoProcess } from '../support/processes.ts';

let run: RunningTopology | undefined;
let proc: GwmoProcess | undefined;
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  await run?.stop();
  run = undefined;
  await proc?.stop('SIGKILL');
  proc = undefined;
  for (const c of cleanups.splice(0)) await c();
});

const TOPOLOGY = `version: 1
name: split
server: { listen: 127.0.0.1:0 }
gateways:
  - id: gw-top
    devices:
      - { id: 'IMEI:356938035649101', mode: proxy, model: Meter }
    gateways:
      - id: gw-child
        adapters:
          - { type: sim, devices: [{ address: l1, kind: light }, { address: t1, kind: sensor }] }
`;

/** Whether a process with this pid exists (signal 0 checks without signalling). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Reads a node of a device through the server's operator API (routed through the gateway tree). */
async function read(r: RunningTopology, deviceId: string, uri: string): Promise<{ status: number; data?: string }> {
  const res = await fetch(`${r.urls.api}/devices/${encodeURIComponent(deviceId)}/commands`, {
    method: 'POST',
    body: JSON.stringify({ cmd: 'Get', uri, timeout: 20 }),
    headers: { 'content-type': 'application/json' },
  });
  const body = (await res.json()) as { status: number; results?: { data: string }[] };
  return { status: body.status, ...(body.results?.[0] ? { data: body.results[0].data } : {}) };
}

describe('gateways as separate processes', () => {
  it('serve the tree across processes, mirror their actors, restart a killed one, and all stop', async () => {
    const tmp = await tempDir('gwmo-procs-');
    cleanups.push(tmp.cleanup);
    const hub = new InspectionHub();
    const lines: string[] = [];
    run = await startTopology(parseTopology(TOPOLOGY, 'split.yaml'), {
      dataDir: tmp.dir,
      logger: memoryLogger('p').logger,
      processes: true,
      inspect: hub.observer,
      remoteInspect: hub,
      logLine: (l) => lines.push(l),
    });
    const top = run.parts.get('gw-top')!;
    const child = run.parts.get('gw-child')!;
    expect(new Set([process.pid, top.pid, child.pid]).size).toBe(3);
    expect(run.gateways.size).toBe(0); // none in this process
    await until(async () => (await child.associationCount()) === 2, 'the sim devices in the child process');
    // The gateway processes' logs come back to the parent's log.
    expect(lines.some((l) => /gw-child.*gateway gw-child running/.test(l))).toBe(true);

    // A device two gateways (two processes) down, by its id alone.
    await until(async () => (await run!.server!.route('urn:dev:sim:l1')) !== undefined, 'the route to l1', 20_000);
    expect(await read(run, 'urn:dev:sim:l1', './DevInfo/Mod')).toEqual({ status: 200, data: 'sim-light' });

    // One route tree in the visualizer's model: the child's gateway actor under gw-top's association of it.
    const routeOf = (gw: string): string | undefined => hub.snapshot().actors.find((a) => a.kind === 'gateway' && a.gateway === gw)?.route.join('>');
    await until(() => routeOf('gw-child') === 'server>gw-top>gw-child', 'the mirrored child gateway in the route tree');
    expect(routeOf('gw-top')).toBe('server>gw-top');
    const childActors = hub.snapshot().actors.filter((a) => a.key.startsWith('gw-child/'));
    expect(childActors.some((a) => a.kind === 'association' && a.device === 'urn:dev:sim:l1')).toBe(true);

    // A gateway process that dies is restarted (with its subtree) and serves again.
    process.kill(child.pid, 'SIGKILL');
    await until(() => (run!.parts.get('gw-child')?.pid ?? child.pid) !== child.pid, 'gw-child restarted', 30_000);
    expect(alive(child.pid)).toBe(false);
    await until(async () => (await read(run!, 'urn:dev:sim:t1', './DevInfo/Mod')).data === 'sim-sensor', 'a read after the restart', 30_000);
    // The dead process's actors left the model; the new one's are there.
    await until(() => routeOf('gw-child') === 'server>gw-top>gw-child', 'the restarted gateway in the route tree');

    // A reload adds a gateway (a new process, associated with its running parent over IPC) and removes it again.
    const withExtra = `${TOPOLOGY}      - id: gw-extra
        adapters:
          - { type: sim, devices: [{ address: x1, kind: thermostat }] }
`;
    expect(await run.reload(parseTopology(withExtra, 'split.yaml'))).toEqual({ restarted: ['gw-extra'], added: ['gw-extra'], removed: [] });
    const extra = run.parts.get('gw-extra')!;
    expect(run.parts.get('gw-top')!.pid).toBe(top.pid); // untouched
    expect(await top.hasAssociation('gw-extra')).toBe(true);
    await until(async () => (await read(run!, 'urn:dev:sim:x1', './DevInfo/Mod')).data === 'sim-thermostat', 'x1 behind the new gateway process', 30_000);
    expect(await run.reload(parseTopology(TOPOLOGY, 'split.yaml'))).toEqual({ restarted: [], added: [], removed: ['gw-extra'] });
    expect(run.parts.has('gw-extra')).toBe(false);
    expect(await top.hasAssociation('gw-extra')).toBe(false);
    expect(alive(extra.pid)).toBe(false);

    const pids = [...run.parts.values()].map((p) => p.pid);
    await run.stop();
    run = undefined;
    expect(pids.filter(alive)).toEqual([]);
  }, 90_000);

  it('gateway processes stop by themselves when `gwmo up` is killed', async () => {
    const tmp = await tempDir('gwmo-procs-orphan-');
    cleanups.push(tmp.cleanup);
    const file = join(tmp.dir, 'split.yaml');
    await writeFile(file, TOPOLOGY);
    proc = await startGwmo(['up', file, '--processes', '--no-visualizer', '--json', '--data', join(tmp.dir, 'data')], /"warnings"/, 60_000);
    // The JSON summary is complete once the closing brace of the object has arrived.
    await until(() => /\n\}\s*$/.test(proc!.output().slice(proc!.output().indexOf('{'))), 'the JSON summary');
    const text = proc.output();
    const summary = JSON.parse(text.slice(text.indexOf('{'), text.lastIndexOf('}') + 1)) as { processes: boolean; gateways: { id: string; pid: number }[] };
    expect(summary.processes).toBe(true);
    const pids = summary.gateways.map((g) => g.pid);
    expect(pids).toHaveLength(2);
    expect(pids).not.toContain(proc.proc.pid);
    expect(pids.every(alive)).toBe(true);
    await proc.stop('SIGKILL');
    proc = undefined;
    await until(() => !pids.some(alive), 'the orphaned gateway processes to stop', 15_000);
  }, 90_000);
});
