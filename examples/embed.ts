// Runs the demo building inside this process and reads one device through the server's API.
// Run: node bin/run-ts.js examples/embed.ts
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger, loadTopology, startTopology } from 'gwmo';

const topology = await loadTopology('topologies/building.yaml');
if (!('url' in topology.server)) topology.server.listen = '127.0.0.1:0'; // any free port
const dataDir = await mkdtemp(join(tmpdir(), 'gwmo-embed-'));
const running = await startTopology(topology, { dataDir, logger: createLogger('embed', { level: 'warn' }) });
try {
  const floor2 = running.gateways.get('gw-floor2')!;
  console.log(`floor 2 has ${floor2.associations.all().length} devices; API at ${running.urls.api}`);
  // Any device, by id, through the server: the route through the building gateway is found for you.
  for (let i = 0; i < 50; i++) {
    const res = await fetch(`${running.urls.api}/devices/${encodeURIComponent('urn:dev:sim:r201-light')}/commands`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ cmd: 'Get', uri: './DevInfo/Mod', timeout: 20 }),
    });
    if (res.ok) {
      const r = (await res.json()) as { results: { data: string }[]; delivery?: { kind: string; via?: string } };
      console.log(`r201-light is a ${r.results[0]!.data}, reached by ${r.delivery?.kind} via ${r.delivery?.via}`);
      break;
    }
    await new Promise((r) => setTimeout(r, 200)); // the server is still learning routes
  }
} finally {
  await running.stop();
  await rm(dataDir, { recursive: true, force: true });
}
