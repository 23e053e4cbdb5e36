import { it } from 'vitest';
import { startBed } from '../support/fixtures.ts';
import { run } from '../e2e/helpers.ts';
it('probe', async () => {
  for (const [c, s] of [['hmac','hmac'],['basic','md5']] as const) {
  const bed = await startBed([{ deviceId: 'IMEI:1', authType: c, serverAuthType: s, encoding: 'wbxml' }]);
  const dev = bed.devices[0]!;
  await dev.connect();
  const n = dev.nextSession();
  await run(bed, 'IMEI:1', { cmd: 'Get', uri: './Vendor/Temp' });
  await n;
  console.log(bed.serverLog.join('\n'));
  console.log(bed.deviceLogs[0]!.join('\n'));
  await bed.close();
  }
});
