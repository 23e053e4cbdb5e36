/**
 * Use case "image distribution with the DM gateway" (GwMO-DCIS-001..006, notes §1.6): the server
 * stores a firmware image on the building gateway (which downloads it once from the operator's file
 * server), then fans out the install command carrying `${ImageURL:<name>}`. Each floor gateway
 * fetches the image from the building gateway's store (not from the file server), and each device
 * downloads from its own floor gateway. Checked on disk: every gateway holds one copy; every device
 * reports the same SHA-256. A store the server switched off refuses new images.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { SimAdapter } from '../../adapters/sim.ts';
import { addGateway, operate, proxyAssociation, startDeployment, until, type Deployment } from '../support/gateways.ts';
import { completion, readLeaf, readResults, startJob } from '../support/fanout.ts';

let d: Deployment | undefined;
let files: Server | undefined;
afterEach(async () => {
  await d?.close();
  d = undefined;
  await new Promise((r) => (files ? files.close(r) : r(undefined)));
  files = undefined;
});

/** The operator's file server: serves one image and counts downloads. */
async function fileServer(image: Buffer): Promise<{ url: string; downloads: () => number }> {
  let n = 0;
  files = createServer((req, res) => {
    if (req.url !== '/fw/2.0.0.bin') return void res.writeHead(404).end();
    n++;
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': image.length }).end(image);
  });
  await new Promise<void>((r) => files!.listen(0, '127.0.0.1', r));
  const port = (files.address() as { port: number }).port;
  return { url: `http://127.0.0.1:${port}/fw/2.0.0.bin`, downloads: () => n };
}

const blobs = async (dir: string): Promise<string[]> => (await readdir(dir)).filter((f) => /^[0-9a-f]{64}/.test(f));

describe('image distribution', () => {
  it('stores the image once per gateway, flows it down the tree, and 50 devices install identical bytes from their own gateway', async () => {
    const image = randomBytes(256 * 1024);
    const hash = `sha256:${createHash('sha256').update(image).digest('hex')}`;
    const src = await fileServer(image);
    d = await startDeployment([{ deviceId: 'gw-bldg', username: 'gw-bldg-user', secret: 'gw-bldg-secret' }]);
    const bldg = await addGateway(d, 'gw-bldg', { kind: 'server', server: d.server }, [proxyAssociation('gw-fl1', { gateway: true }), proxyAssociation('gw-fl2', { gateway: true })]);
    const fl1 = await addGateway(d, 'gw-fl1', { kind: 'gateway', gateway: bldg }, [], { adapters: [{ type: 'sim', generate: { count: 30, prefix: 'a', kind: 'light' } }] });
    const fl2 = await addGateway(d, 'gw-fl2', { kind: 'gateway', gateway: bldg }, [], { adapters: [{ type: 'sim', generate: { count: 20, prefix: 'b', kind: 'sensor' } }] });
    await until(async () => fl1.associations.size === 30 && fl2.associations.size === 20, 'the devices to associate');

    // 1. The server stores the image on the building gateway (plain DM: Add + Exec Download).
    const img = './GwMO/ImageInventory/Images/fw2';
    const store = await operate(d.server, 'gw-bldg', {
      cmd: 'Sequence',
      commands: [
        { cmd: 'Add', uri: img, format: 'node' },
        { cmd: 'Add', uri: `${img}/ImageID`, value: 'lamp-fw-2.0.0' },
        { cmd: 'Add', uri: `${img}/Kind`, value: 'firmware' },
        { cmd: 'Add', uri: `${img}/Hash`, value: hash },
        { cmd: 'Add', uri: `${img}/SourceURL`, value: src.url },
        { cmd: 'Exec', uri: `${img}/Operations/Download` },
      ],
    });
    expect(store.status, JSON.stringify(store)).toBe(200);
    expect(store.statuses.at(-1).status).toBe(200);
    expect(await readLeaf(d.server, 'gw-bldg', `${img}/State`)).toBe('30');
    const localUrl = await readLeaf(d.server, 'gw-bldg', `${img}/LocalURL`);
    expect(localUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/images\/[0-9a-f]{64}\?exp=\d+&sig=[0-9a-f]+$/);

    // 2. One fanout: point every device at the image on its own gateway, install, report the hash.
    const start = await startJob(
      d.server,
      'gw-bldg',
      'fw-rollout',
      {
        groupId: '*',
        commands: [
          { cmd: 'Replace', uri: './FwUpdate/PkgURL', data: '${ImageURL:fw2}' },
          { cmd: 'Exec', uri: './FwUpdate/DownloadAndUpdate' },
          { cmd: 'Get', uri: './FwUpdate/LastHash' },
        ],
      },
      'c-fw',
    );
    expect(start.status).toBe(200);
    const done = await completion(d.server, 'gw-bldg', 'c-fw', 60_000);
    expect(done.data).toContain('<State>30</State>');
    const rows = Object.values(await readResults(d.server, 'gw-bldg', 'fw-rollout'));
    expect(rows).toHaveLength(50);
    for (const r of rows) {
      expect(r.status, r.deviceId).toBe(200);
      expect(r.cmds['3']?.data, r.deviceId).toBe(hash); // identical bytes on every device
    }

    // 3. Where the bytes came from: the file server once; each floor from the building; devices from their floor.
    expect(src.downloads()).toBe(1);
    for (const [gw, sim, n] of [[fl1, fl1.adapters.get('sim') as SimAdapter, 30], [fl2, fl2.adapters.get('sim') as SimAdapter, 20]] as const) {
      const urls = sim.list().map((x) => sim.inspect(x.address)!.pkgUrl);
      expect(urls.filter((u) => u.startsWith(`${gw.south.url}/images/`))).toHaveLength(n);
      expect(gw.images.get('fw2')?.sourceUrl).toMatch(new RegExp(`^${bldg.south.url}/images/`));
    }
    // 4. On disk: one stored copy per gateway, whatever the number of devices.
    for (const gw of [bldg, fl1, fl2]) {
      const dir = join(d.dir, gw.config.id, 'images');
      const stored = await blobs(dir);
      expect(stored, gw.config.id).toHaveLength(1);
      expect(stored[0]!.startsWith(hash.slice(7))).toBe(true);
    }
  });

  it('refuses new images when the server switches storage off, and keeps serving stored ones', async () => {
    const image = Buffer.from('config v1\n');
    const src = await fileServer(image);
    d = await startDeployment([{ deviceId: 'gw-img', username: 'gw-img-user', secret: 'gw-img-secret' }]);
    const gw = await addGateway(d, 'gw-img', { kind: 'server', server: d.server });
    const add = (name: string) =>
      operate(d!.server, 'gw-img', {
        cmd: 'Sequence',
        commands: [
          { cmd: 'Add', uri: `./GwMO/ImageInventory/Images/${name}`, format: 'node' },
          { cmd: 'Add', uri: `./GwMO/ImageInventory/Images/${name}/Kind`, value: 'config' },
          { cmd: 'Add', uri: `./GwMO/ImageInventory/Images/${name}/SourceURL`, value: src.url },
          { cmd: 'Exec', uri: `./GwMO/ImageInventory/Images/${name}/Operations/Download` },
        ],
      });
    expect((await add('cfg1')).statuses.at(-1).status).toBe(200);
    const off = await operate(d.server, 'gw-img', { cmd: 'Replace', uri: './GwMO/ImageInventory/Config/Enabled', value: 'false', format: 'bool' });
    expect(off.status).toBe(200);
    const refused = await add('cfg2');
    expect(refused.statuses.at(-1).status).toBe(406);
    expect(await readLeaf(d.server, 'gw-img', './GwMO/ImageInventory/Images/cfg2/State')).not.toBe('30');
    expect(src.downloads()).toBe(1);
    const url = gw.images.localUrl('cfg1')!;
    const res = await fetch(url);
    expect(Buffer.from(await res.arrayBuffer()).equals(image)).toBe(true);
  });
});
