/**
 * A gateway keeps its associations as records and activates actors on demand: a network of
 * devices attaches without one actor each, a fanout over all of them that succeeds creates none,
 * a device that stops answering gets its actor (and is detached after two failures), and a restart
 * restores every association from the records without creating actors.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { gatewayConfigSchema } from '../../src/gateway/config.ts';
import { Gateway } from '../../src/gateway/gateway.ts';
import { silentLogger } from '../../src/log.ts';
import type { SimAdapter } from '../../adapters/sim.ts';
import type { PluginWrite } from '../../src/tree/tree.ts';
import { until } from '../support/gateways.ts';

const config = (n: number) =>
  gatewayConfigSchema.parse({
    id: 'gw-v',
    parent: { url: 'http://127.0.0.1:9/dm', serverId: 'dms', username: 'u', secret: 's', serverSecret: 'x' },
    serverId: 'gw-v-south',
    serverSecret: 'y',
    newDeviceAlert: false,
    adapters: [{ type: 'sim', generate: { count: n, prefix: 'v', kind: 'sensor' }, latencyMs: 0 }],
    fanout: { timeout: 2, maxConcurrency: 64 },
  });

let dir: string | undefined;
let gw: Gateway | undefined;
afterEach(async () => {
  await gw?.stop();
  gw = undefined;
  if (dir) await rm(dir, { recursive: true, force: true });
  dir = undefined;
});

const liveActors = (g: Gateway): number => g.actor.getSnapshot().context.associations.size;

async function runJob(g: Gateway, name: string): Promise<void> {
  const plugin = g.fanout.plugin();
  const chr = (data: string): PluginWrite => ({ format: 'chr', type: '', data });
  await plugin.add!(name, { format: 'node', type: '' }, {});
  await plugin.add!(`${name}/Target/GroupID`, chr('*'), {});
  await plugin.add!(`${name}/Commands/1/Cmd`, chr('Get'), {});
  await plugin.add!(`${name}/Commands/1/URI`, chr('./Point/Value'), {}); // a native read (DevInfo is static)
  expect((await plugin.exec!(`${name}/Operations/Start`, {}, { serverId: 'dms' })).status).toBe(202);
  await until(() => (g.fanout.job(name)?.state ?? 0) >= 30, `job ${name} to end`);
}

describe('virtual association actors in a gateway', () => {
  it('attaches, fans out and restarts with records only; activates the actor of a device that fails', async () => {
    dir = await mkdtemp(join(tmpdir(), 'gwmo-virtual-'));
    gw = await Gateway.create({ config: config(300), dataDir: dir, logger: silentLogger });
    await gw.start();
    await gw.settled();
    expect(gw.associations.size).toBe(300);
    expect(liveActors(gw)).toBe(0);

    await runJob(gw, 'all-ok');
    expect(gw.fanout.job('all-ok')!.state).toBe(30);
    expect(gw.fanout.resultsOf('all-ok').size).toBe(300);
    expect(liveActors(gw)).toBe(0);

    // One device goes silent: its legs time out (461), its actor counts the failures and detaches it.
    const sim = gw.adapters.get('sim') as SimAdapter;
    const silent = 'v7';
    sim.behave(silent, { unreachable: true });
    const id = 'urn:dev:sim:v7';
    await runJob(gw, 'one-silent');
    expect(gw.fanout.job('one-silent')!.state).toBe(40);
    expect(gw.fanout.resultsOf('one-silent').get(gw.associations.get(id)!.key)!.status).toBe(461);
    expect([...gw.actor.getSnapshot().context.associations.keys()]).toEqual([id]);
    await runJob(gw, 'again');
    await until(() => gw!.associations.get(id)?.status === 'detached', 'the silent device to be detached');
    expect(liveActors(gw)).toBe(1);

    // Restart: every association is back from its records, with no actor until one is needed.
    await gw.stop();
    gw = await Gateway.create({ config: config(300), dataDir: dir, logger: silentLogger });
    await gw.start();
    await gw.settled();
    expect(gw.associations.size).toBe(300);
    expect(gw.associations.get(id)!.status).not.toBe('pending');
    expect(liveActors(gw)).toBeLessThanOrEqual(1); // the reappearing silent device may be re-attached
    expect((await gw.tree.get(`./GwMO/DeviceInventory/Records/${gw.associations.get('urn:dev:sim:v300')!.key}/Status`, { serverId: 'dms' })).data).toBe('1');
  }, 60_000);
});
