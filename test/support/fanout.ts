/**
 * Helpers for fanout tests: the server defines and starts a job on a gateway with plain DM
 * commands through its API (one Sequence of Adds and the Exec), waits for the FanoutComplete
 * alert, and reads the results back with Get.
 */
import type { DmServer } from '../../src/server/server.ts';
import { operate, until } from './gateways.ts';

/** A job as a test writes it. */
export interface JobSpec {
  groupId?: string;
  deviceIds?: string[];
  commands: { cmd: string; uri: string; data?: string; format?: string }[];
  policy?: { timeout?: number; maxConcurrency?: number; report?: number; abortOnFailRatio?: number };
}

/** Adds the job's nodes and starts it (Exec with a correlator); returns the API answer of the Sequence. */
export async function startJob(server: DmServer, gatewayId: string, name: string, job: JobSpec, correlator: string): Promise<any> {
  const base = `./GwMO/Fanout/${name}`;
  const commands: Record<string, unknown>[] = [{ cmd: 'Add', uri: base, format: 'node' }];
  if (job.groupId) commands.push({ cmd: 'Add', uri: `${base}/Target/GroupID`, value: job.groupId });
  if (job.deviceIds) commands.push({ cmd: 'Add', uri: `${base}/Target/DeviceIDs`, value: job.deviceIds.map(encodeURIComponent).join('/') });
  job.commands.forEach((c, i) => {
    commands.push({ cmd: 'Add', uri: `${base}/Commands/${i + 1}/Cmd`, value: c.cmd });
    commands.push({ cmd: 'Add', uri: `${base}/Commands/${i + 1}/URI`, value: c.uri });
    if (c.data !== undefined) commands.push({ cmd: 'Add', uri: `${base}/Commands/${i + 1}/Data`, value: c.data });
    if (c.format !== undefined) commands.push({ cmd: 'Add', uri: `${base}/Commands/${i + 1}/Format`, value: c.format });
  });
  for (const [k, v] of Object.entries(job.policy ?? {})) {
    const leaf = k[0]!.toUpperCase() + k.slice(1);
    commands.push({ cmd: 'Add', uri: `${base}/Policy/${leaf}`, value: String(v), format: 'int' });
  }
  commands.push({ cmd: 'Exec', uri: `${base}/Operations/Start`, correlator });
  return operate(server, gatewayId, { cmd: 'Sequence', commands });
}

/** Waits for the gateway's FanoutComplete alert with `correlator` at the server; returns its items. */
export async function completion(server: DmServer, gatewayId: string, correlator: string, ms = 30_000): Promise<{ data: string; source: string }> {
  let found: { data: string; source: string } | undefined;
  await until(
    async () => {
      const alerts = await server.queue.listAlerts(gatewayId);
      for (const a of alerts) {
        if (a.correlator !== correlator) continue;
        const it = a.items.find((i) => String(i.meta?.type ?? '').endsWith(':FanoutComplete'));
        if (it) found = { data: String(it.data ?? ''), source: it.source?.locURI ?? '' };
      }
      return !!found;
    },
    `the FanoutComplete alert ${correlator}`,
    ms,
  );
  return found!;
}

/** Reads a job's results with one Get ?list=StructData and groups them by member. */
export async function readResults(server: DmServer, gatewayId: string, name: string): Promise<Record<string, { deviceId: string; status: number; cmds: Record<string, { status: number; data?: string }> }>> {
  const r = await operate(server, gatewayId, { cmd: 'Get', uri: `./GwMO/Fanout/${name}/Results?list=StructData` });
  if (r.status !== 200) throw new Error(`Get Results answered ${r.status}: ${JSON.stringify(r)}`);
  const out: Record<string, { deviceId: string; status: number; cmds: Record<string, { status: number; data?: string }> }> = {};
  const prefix = `./GwMO/Fanout/${name}/Results/`;
  for (const item of r.results as { uri: string; data?: string }[]) {
    if (!item.uri.startsWith(prefix)) continue;
    const [m, leaf, n, sub] = item.uri.slice(prefix.length).split('/');
    const row = (out[m!] ??= { deviceId: '', status: 0, cmds: {} });
    if (leaf === 'DeviceID') row.deviceId = item.data ?? '';
    else if (leaf === 'Status') row.status = Number(item.data);
    else if (leaf === 'Cmd' && n && sub) {
      const c = (row.cmds[n] ??= { status: 0 });
      if (sub === 'Status') c.status = Number(item.data);
      if (sub === 'Data') c.data = item.data;
    }
  }
  return out;
}

/** Reads one leaf of a gateway's tree through the server. */
export async function readLeaf(server: DmServer, gatewayId: string, uri: string): Promise<string | undefined> {
  const r = await operate(server, gatewayId, { cmd: 'Get', uri });
  if (r.status === 200) return r.results?.[0]?.data;
  // Callers poll with this (undefined: not there yet), so a failure is not thrown; but one that is
  // not a plain 404 is printed whole, so a failed assertion after it can be understood.
  if (r.status !== 404) console.error(`readLeaf: Get ${uri} on ${gatewayId} answered ${JSON.stringify(r).slice(0, 800)}`);
  return undefined;
}
