/**
 * A runnable tour of the BLE adapter over the simulated radio (`node bin/run-ts.js adapters/ble/demo.ts`):
 * scan and adopt by Filter, read decoded SIG values, associate a light and switch it, pair with a
 * lock's passkey, subscribe to temperature notifications, then a sensor vanishing. Everything goes
 * through noble's own objects; the process exits by itself after `stop()`.
 */
import { BleAdapter, bleAdapterConfigSchema } from './adapter.ts';
import { LIGHT_ONOFF, LIGHT_SERVICE, LOCK_SERVICE } from './sim.ts';

const SENSOR = 'a4:c1:38:00:00:01';
const LIGHT = 'a4:c1:38:00:00:02';
const LOCK = 'a4:c1:38:00:00:03';
const say = (...a: unknown[]): void => console.log(...a);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const ble = new BleAdapter(
  bleAdapterConfigSchema.parse({
    type: 'ble',
    bindings: 'sim',
    filter: 'service:181a',
    scanIntervalMs: 300,
    scanWindowMs: 200,
    lostAfterMs: 600,
    idleDisconnectMs: 500,
    connectTimeoutMs: 500,
    formats: { [LIGHT_ONOFF]: 'bool' },
    sim: {
      latencyMs: 5,
      peripherals: [
        { address: SENSOR, kind: 'sensor' },
        { address: LIGHT, kind: 'light' },
        { address: LOCK, kind: 'lock', passkey: '271828' },
      ],
    },
  }),
);
const sim = ble.simulator!;
await ble.start({
  attached: (d) => say(`attached  ${d.address} ${d.deviceId} ${d.mod ?? ''}`),
  detached: (a) => say(`detached  ${a}`),
  link: (s, detail) => say(`link      ${s}${detail ? ` (${detail})` : ''}`),
});
say((await ble.operations[0]!.run('300')).data);

const sensor = ble.device(SENSOR)!;
const read = async (p: typeof sensor, path: string): Promise<string | undefined> => (await p.get(path, {}))?.data;
say('temperature', await read(sensor, 'BLE/Services/181a/Characteristics/2a6e/Value'), '°C');
say('battery    ', await read(sensor, 'BLE/Services/180f/Characteristics/2a19/Value'), '%');
say('maker/model', await read(sensor, 'DevInfo/Man'), await read(sensor, 'DevInfo/Mod'));

await ble.associate({ Address: LIGHT, Profile: LIGHT_SERVICE });
const light = ble.device(LIGHT)!;
await light.replace!(`BLE/Services/${LIGHT_SERVICE}/Characteristics/${LIGHT_ONOFF}/Value`, { format: 'bool', type: 'text/plain', data: 'true' }, {});
say('light on in the simulated world:', sim.lightOn(LIGHT));

const wrong = await ble.associate({ Address: LOCK, Passkey: '000000', Profile: LOCK_SERVICE }).catch((e: { status: number; code: string }) => e);
say('lock, wrong passkey:', (wrong as { status: number }).status, (wrong as { code: string }).code);
await ble.associate({ Address: LOCK, Passkey: '271828', Profile: LOCK_SERVICE });
say('lock, right passkey: bonded =', sim.bonded(LOCK));

await sensor.replace!('BLE/Services/181a/Characteristics/2a6e/Notify', { format: 'bool', type: 'text/plain', data: 'true' }, {});
sim.setTemperature(SENSOR, 19.75);
await sleep(50);
say('notified   ', await read(sensor, 'BLE/Services/181a/Characteristics/2a6e/LastValue'), 'at', await read(sensor, 'BLE/Services/181a/Characteristics/2a6e/LastUpdate'));
say('peak simultaneous links:', sim.peakConnections);

await sensor.replace!('BLE/Services/181a/Characteristics/2a6e/Notify', { format: 'bool', type: 'text/plain', data: 'false' }, {});
sim.vanish(SENSOR);
await sleep(2_000);
await ble.stop();
say('stopped');
