/**
 * The KNXnet/IP link dropping and coming back: knxd is killed under the adapter (the heartbeat
 * notices), operations meanwhile end with 503 (one in flight included, before its own timeout),
 * the Link retries with growing backoff, and once knxd is back on the same port the adapter
 * reconnects by itself and reads work again.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { KnxAdapter, knxAdapterConfigSchema } from '../../adapters/knx/adapter.ts';
import { startKnxd, type Knxd } from '../../adapters/knx/knxd.ts';
import { KnxSim } from '../../adapters/knx/sim.ts';
import type { LinkState } from '../../adapters/contract.ts';
import { DmStatusError } from '../../src/errors.ts';

const statusOf = async (op: () => unknown): Promise<number | undefined> => {
  try {
    await op();
    return 200;
  } catch (err) {
    return err instanceof DmStatusError ? err.status : -1;
  }
};
const until = async (cond: () => boolean, what: string, ms = 8000): Promise<void> => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

let knxd: Knxd | undefined;
let sim: KnxSim | undefined;
let adapter: KnxAdapter | undefined;
afterAll(async () => {
  await adapter?.stop();
  await sim?.stop();
  await knxd?.stop();
});

describe('KNX link loss', () => {
  it('answers 503 while knxd is down, backs off, and reconnects when it returns on the same port', async () => {
    knxd = await startKnxd();
    sim = new KnxSim({ port: knxd.port });
    const dev = await sim.add({ address: '1.1.5', objects: [{ ga: '1/2/3', dpt: 'DPT1.001', value: 'on' }, { ga: '1/2/4', dpt: 'DPT9.001', value: '18' }] });
    const states: { state: LinkState; detail?: string; at: number }[] = [];
    adapter = new KnxAdapter(
      knxAdapterConfigSchema.parse({
        type: 'knx',
        gateway: `127.0.0.1:${knxd.port}`,
        physAddr: '1.1.250',
        readTimeoutMs: 4000,
        probeIntervalMs: 0,
        heartbeatMs: 200,
        connectTimeoutMs: 300,
        backoff: { initialMs: 100, maxMs: 800, factor: 2 },
        devices: [{ address: '1.1.5', groupObjects: [{ ga: '1/2/3', dpt: 'DPT1.001' }, { ga: '1/2/4', dpt: 'DPT9.001' }] }],
      }),
    );
    await adapter.start({ attached: () => {}, detached: () => {}, link: (state, detail) => states.push({ state, detail, at: Date.now() }) });
    await adapter.connected(5000);
    const p = adapter.device('1.1.5')!;
    expect((await p.get('KNX/GroupObjects/1-2-4/Value', {}))?.data).toBe('18');

    // A read in flight when the link dies ends with 503 at once, not after its 4 s timeout.
    dev.behave({ silent: true });
    const t0 = Date.now();
    const inflight = statusOf(() => p.get('KNX/GroupObjects/1-2-4/Value', {}));
    await new Promise((r) => setTimeout(r, 50));
    await knxd.kill();
    expect(await inflight).toBe(503);
    expect(Date.now() - t0).toBeLessThan(3000);
    dev.behave({});
    expect(['backoff', 'connecting']).toContain(adapter.linkState);

    // Everything native answers 503 while the link is down; bad values are still 400.
    expect(await statusOf(() => p.get('KNX/GroupObjects/1-2-3/Value', {}))).toBe(503);
    expect(await statusOf(() => p.replace!('KNX/GroupObjects/1-2-3/Value', { format: 'chr', type: 'text/plain', data: 'off' }, {}))).toBe(503);
    expect(await statusOf(() => p.replace!('KNX/GroupObjects/1-2-3/Value', { format: 'chr', type: 'text/plain', data: 'dim' }, {}))).toBe(400);
    expect(await statusOf(() => adapter!.operations[0]!.run(undefined))).toBe(503);
    expect(await statusOf(() => adapter!.associate({ IndividualAddress: '1.1.9', GroupObjects: '1/2/9:DPT1' }))).toBe(503);
    // Identity and configuration stay readable.
    expect((await p.get('KNX/GroupObjects/1-2-3/Type', {}))?.data).toBe('DPT1.001');

    // Several failed attempts, each scheduled later than the one before (exponential, jittered upwards).
    await until(() => states.filter((s) => s.state === 'backoff').length >= 4, 'four backoff rounds', 10_000);
    const retries = states.filter((s) => s.state === 'backoff').map((s) => Number(/in (\d+) ms/.exec(s.detail ?? '')?.[1]));
    expect(retries.every((n) => Number.isFinite(n))).toBe(true);
    expect(Math.max(...retries.slice(2))).toBeGreaterThan(Math.min(...retries.slice(0, 1)));
    expect(adapter.reconnects).toBe(0);

    await knxd.restart();
    await sim.reconnect();
    await until(() => adapter!.linkState === 'connected', 'the adapter to reconnect', 10_000);
    expect(adapter.reconnects).toBe(1);
    expect((await p.get('KNX/GroupObjects/1-2-3/Value', {}))?.data).toBe('on');
    expect(await statusOf(() => p.replace!('KNX/GroupObjects/1-2-3/Value', { format: 'chr', type: 'text/plain', data: 'off' }, {}))).toBe(200);
    await until(() => dev.value('1/2/3') === 'off', 'the device to switch off after the reconnect');
  });
});
