/**
 * A runnable ZigBee demo on the simulated coordinator: `node bin/run-ts.js adapters/zigbee/demo.ts`.
 * The real zigbee-herdsman controller forms a network on the simulated ZiGate, a light and a
 * temperature sensor join, the light is switched on through its DM subtree, the temperature read,
 * and everything stops. It prints one JSON line and must exit by itself (the child-process test
 * runs it to prove `stop()` releases every handle: the controller, the TCP link, timers). With
 * `--drop`, the coordinator link drops first and `stop()` runs while the link is backing off.
 */
import { ZigbeeAdapter, zigbeeAdapterConfigSchema } from './adapter.ts';

const LIGHT = '0x00124b00000d0001';
const SENSOR = '0x00124b00000d0002';

const adapter = new ZigbeeAdapter(
  zigbeeAdapterConfigSchema.parse({
    type: 'zigbee',
    permitJoinSeconds: 30,
    responseTimeoutMs: 1000,
    simulator: { devices: [{ ieee: LIGHT, kind: 'light' }, { ieee: SENSOR, kind: 'temperature' }] },
  }),
);
const attached = new Set<string>();
const t0 = Date.now();
await adapter.start({ attached: (d) => attached.add(d.address), detached: (a) => attached.delete(a) });
while (attached.size < 2) {
  if (Date.now() - t0 > 10_000) throw new Error('devices did not join');
  await new Promise((r) => setTimeout(r, 20));
}
const light = adapter.device(LIGHT)!;
await light.exec!('ZigBee/Endpoints/1/Clusters/0006/Commands/01', {}, {});
const on = (await light.get('ZigBee/Endpoints/1/Clusters/0006/Attributes/0000', {}))?.data;
const temp = (await adapter.device(SENSOR)!.get('ZigBee/Endpoints/1/Clusters/0402/Attributes/0000', {}))?.data;
if (process.argv.includes('--drop')) {
  await adapter.sim!.offline();
  while (adapter.linkState !== 'backoff') await new Promise((r) => setTimeout(r, 20));
}
const state = adapter.linkState;
await adapter.stop();
console.log(JSON.stringify({ joined: attached.size, on, temperature: Number(temp) / 100, state, ms: Date.now() - t0 }));
