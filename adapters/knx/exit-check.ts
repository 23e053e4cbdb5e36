/**
 * Start/stop check run as its own process (test/adapters/knx-exit.test.ts): knxd, a simulated
 * device and the adapter come up, the adapter reads and writes once, everything stops, and the
 * process must then exit by itself: proof that npm `knx`'s sockets and timers were released
 * (its `Disconnect()` alone leaves them open). Prints `KNX_EXIT_CHECK ok <value>` when done.
 */
import { KnxAdapter, knxAdapterConfigSchema } from './adapter.ts';
import { startKnxd } from './knxd.ts';
import { KnxSim } from './sim.ts';

const knxd = await startKnxd();
const sim = new KnxSim({ port: knxd.port });
await sim.add({ address: '1.1.5', objects: [{ ga: '1/2/4', dpt: 'DPT9.001', value: '19.5' }] });
const adapter = new KnxAdapter(
  knxAdapterConfigSchema.parse({
    type: 'knx',
    gateway: `127.0.0.1:${knxd.port}`,
    physAddr: '1.1.250',
    probeIntervalMs: 100,
    heartbeatMs: 200,
    devices: [{ address: '1.1.5', groupObjects: [{ ga: '1/2/4', dpt: 'DPT9.001' }] }],
  }),
);
await adapter.start({ attached: () => {}, detached: () => {} });
await adapter.connected(5000);
const v = await adapter.device('1.1.5')!.get('KNX/GroupObjects/1-2-4/Value', {});
await adapter.device('1.1.5')!.replace!('KNX/GroupObjects/1-2-4/Value', { format: 'chr', type: 'text/plain', data: '20' }, {});
await adapter.stop();
await sim.stop();
await knxd.stop();
console.log(`KNX_EXIT_CHECK ok ${v?.data}`);
