/**
 * Operator commands built on the GwMO objects, run through the server's API with plain DM commands
 * on a gateway: `gwmo inventory` (a gateway's device inventory as a table) and `gwmo fanout` (one
 * job on a group, a live progress bar, then a per-member result table). The gateway tree below the
 * named gateway is handled by the gateways themselves (recursive aggregation, docs/fanout.md).
 */
import { callApi, statusText, table } from './client.ts';

/** One result item of the API. */
interface ApiItem {
  uri: string;
  data?: string;
  format?: string;
}

/** Runs DM commands on a device (here: a gateway) through the API and returns the answer. */
async function dm(server: string, device: string, body: Record<string, unknown>, timeout = 60): Promise<{ status: number; results: ApiItem[]; statuses?: { status: number }[] }> {
  const { json } = await callApi(server, 'POST', `api/devices/${encodeURIComponent(device)}/commands`, { wait: true, notify: true, timeout, ...body });
  if (json.state !== 'done') throw new Error(`${device} did not answer within ${timeout} s (command ${json.id} stays queued)`);
  return { status: json.status, results: json.results ?? [], statuses: json.statuses };
}

/** Groups `?list=StructData` results by the path segment after `base`. */
function byRecord(items: ApiItem[], base: string): Map<string, Record<string, string>> {
  const out = new Map<string, Record<string, string>>();
  for (const it of items) {
    if (!it.uri.startsWith(`${base}/`)) continue;
    const [key, ...rest] = it.uri.slice(base.length + 1).split('/');
    if (!key || !rest.length) continue;
    const row = out.get(key) ?? {};
    row[rest.join('/')] = it.data ?? '';
    out.set(key, row);
  }
  return out;
}

const MODES = ['transparent', 'proxy', 'adaptation'];
const STATUS = ['detached', 'attached', 'pending'];

/** `gwmo inventory <gateway>`: the gateway's devices (and child gateways) with mode, protocol and status. */
export async function runInventory(gateway: string, opts: { server: string; json?: boolean }): Promise<void> {
  const base = './GwMO/DeviceInventory/Records';
  const r = await dm(opts.server, gateway, { cmd: 'Get', uri: `${base}?list=StructData` });
  if (r.status !== 200) throw new Error(`Get ${base} on ${gateway}: ${statusText(r.status)}`);
  const rows = [...byRecord(r.results, base)].map(([key, f]) => ({
    key,
    deviceId: f['DeviceID'] ?? '',
    kind: f['ComponentType'] === '1' ? 'gateway' : 'device',
    mode: MODES[Number(f['Mode'])] ?? f['Mode'] ?? '',
    protocol: f['Protocol'] ?? '',
    status: STATUS[Number(f['Status'])] ?? f['Status'] ?? '',
    man: f['Man'] ?? '',
    mod: f['Mod'] ?? '',
    ...(f['Groups'] ? { groups: f['Groups'] } : {}),
    ...(f['PublicAddress'] ? { publicAddress: f['PublicAddress'] } : {}),
  }));
  if (opts.json) {
    process.stdout.write(JSON.stringify({ gateway, records: rows }, null, 2) + '\n');
    return;
  }
  process.stdout.write(table(['key', 'device', 'kind', 'mode', 'protocol', 'status', 'model'], rows.map((x) => [x.key, x.deviceId, x.kind, x.mode, x.protocol, x.status, [x.man, x.mod].filter(Boolean).join(' ')])) + '\n');
  const attached = rows.filter((x) => x.status === 'attached').length;
  process.stdout.write(`${rows.length} records on ${gateway}: ${attached} attached, ${rows.length - attached} not\n`);
}

/** Options of `gwmo fanout`. */
export interface FanoutOptions {
  server: string;
  group?: string;
  devices?: string;
  cmd: string[];
  name?: string;
  timeout?: number;
  concurrency?: number;
  keep?: boolean;
  json?: boolean;
  wait: number;
}

/** Parses `Get ./DevInfo/Mod`, `Replace ./Point/Value on`, `Exec ./Diag/Run` (data is the rest of the line). */
export function parseMemberCommand(text: string): { cmd: string; uri: string; data?: string } {
  const m = /^\s*(Get|Replace|Add|Delete|Exec)\s+(\S+)(?:\s+(.*))?$/i.exec(text);
  if (!m) throw new Error(`--cmd "${text}": expected "<Get|Replace|Add|Delete|Exec> <uri> [data]"`);
  const cmd = m[1]![0]!.toUpperCase() + m[1]!.slice(1).toLowerCase();
  return { cmd, uri: m[2]!, ...(m[3] !== undefined ? { data: m[3] } : {}) };
}

/** `gwmo fanout <gateway>`: one job over a group (or DeviceIDs) of the gateway's subtree, with live progress and one result table. */
export async function runFanout(gateway: string, opts: FanoutOptions): Promise<void> {
  if (!opts.group === !opts.devices) throw new Error('give either --group <id> or --devices <id,id,...>');
  if (!opts.cmd.length) throw new Error('give at least one --cmd');
  const commands = opts.cmd.map(parseMemberCommand);
  const name = opts.name ?? `cli-${Date.now().toString(36)}`;
  const base = `./GwMO/Fanout/${name}`;
  const define: Record<string, unknown>[] = [{ cmd: 'Add', uri: base, format: 'node' }];
  if (opts.group) define.push({ cmd: 'Add', uri: `${base}/Target/GroupID`, value: opts.group });
  else define.push({ cmd: 'Add', uri: `${base}/Target/DeviceIDs`, value: opts.devices!.split(',').map((s) => encodeURIComponent(s.trim())).join('/') });
  commands.forEach((c, i) => {
    define.push({ cmd: 'Add', uri: `${base}/Commands/${i + 1}/Cmd`, value: c.cmd });
    define.push({ cmd: 'Add', uri: `${base}/Commands/${i + 1}/URI`, value: c.uri });
    if (c.data !== undefined) define.push({ cmd: 'Add', uri: `${base}/Commands/${i + 1}/Data`, value: c.data });
  });
  if (opts.timeout) define.push({ cmd: 'Add', uri: `${base}/Policy/Timeout`, value: String(opts.timeout), format: 'int' });
  if (opts.concurrency) define.push({ cmd: 'Add', uri: `${base}/Policy/MaxConcurrency`, value: String(opts.concurrency), format: 'int' });
  define.push({ cmd: 'Exec', uri: `${base}/Operations/Start`, correlator: name });
  const started = await dm(opts.server, gateway, { cmd: 'Sequence', commands: define });
  const codes = (started.statuses ?? []).map((s) => s.status);
  if (started.status !== 200 || codes.some((c) => c >= 300 && c !== 202 && c !== 0)) {
    throw new Error(`the job was not started on ${gateway}: ${codes.map((c) => statusText(c)).join(', ')}`);
  }
  // Live progress: the job's counters, read while it runs.
  const tty = !opts.json && !!process.stderr.isTTY;
  const deadline = Date.now() + opts.wait * 1000;
  let state = 20;
  let counters = { Total: 0, Succeeded: 0, Failed: 0 };
  while (state < 30) {
    if (Date.now() > deadline) throw new Error(`job ${name} still running after ${opts.wait} s; see gwmo get ${gateway} ${base}/Progress?list=StructData`);
    const p = await dm(opts.server, gateway, { cmd: 'Get', uri: `${base}?list=StructData` });
    const leaf = (k: string): string | undefined => p.results.find((it) => it.uri === `${base}/${k}`)?.data;
    state = Number(leaf('State') ?? 20);
    counters = { Total: Number(leaf('Progress/Total') ?? 0), Succeeded: Number(leaf('Progress/Succeeded') ?? 0), Failed: Number(leaf('Progress/Failed') ?? 0) };
    const done = counters.Succeeded + counters.Failed;
    if (tty) {
      const width = 30;
      const filled = counters.Total ? Math.round((done / counters.Total) * width) : 0;
      process.stderr.write(`\r${name} [${'#'.repeat(filled)}${' '.repeat(width - filled)}] ${done}/${counters.Total}  ok ${counters.Succeeded}  failed ${counters.Failed}   `);
    } else if (!opts.json) process.stderr.write(`${name}: ${done}/${counters.Total} (ok ${counters.Succeeded}, failed ${counters.Failed})\n`);
    if (state < 30) await new Promise((r) => setTimeout(r, 400));
  }
  if (tty) process.stderr.write('\n');
  const res = await dm(opts.server, gateway, { cmd: 'Get', uri: `${base}/Results?list=StructData` });
  const members = [...byRecord(res.results, `${base}/Results`)].map(([key, f]) => ({
    key,
    deviceId: f['DeviceID'] ?? '',
    status: Number(f['Status']),
    commands: commands.map((_, i) => ({ status: Number(f[`Cmd/${i + 1}/Status`] ?? 0), ...(f[`Cmd/${i + 1}/Data`] !== undefined ? { data: f[`Cmd/${i + 1}/Data`] } : {}) })),
  }));
  if (!opts.keep) await dm(opts.server, gateway, { cmd: 'Delete', uri: base }).catch(() => undefined);
  const STATES: Record<number, string> = { 30: 'completed', 40: 'completed with failures', 50: 'cancelled', 60: 'failed' };
  if (opts.json) {
    process.stdout.write(JSON.stringify({ job: name, gateway, state: STATES[state] ?? state, ...counters, members }, null, 2) + '\n');
  } else {
    process.stdout.write(
      table(
        ['member', 'status', ...commands.map((c, i) => `${i + 1}: ${c.cmd} ${c.uri}`)],
        members.map((m) => [m.deviceId, statusText(m.status), ...m.commands.map((c) => (c.data !== undefined ? c.data.slice(0, 40) : statusText(c.status)))]),
      ) + '\n',
    );
    process.stdout.write(`job ${name} on ${gateway}: ${STATES[state] ?? state} — ${counters.Succeeded} of ${counters.Total} succeeded, ${counters.Failed} failed\n`);
  }
  if (state !== 30) process.exitCode = 1;
}

/** `gwmo groups <gateway>`: the gateway's groups with their size, members and filter. */
export async function runGroups(gateway: string, opts: { server: string; json?: boolean }): Promise<void> {
  const base = './GwMO/Groups';
  const r = await dm(opts.server, gateway, { cmd: 'Get', uri: `${base}?list=StructData` });
  if (r.status !== 200) throw new Error(`Get ${base} on ${gateway}: ${statusText(r.status)}`);
  const groups = [...byRecord(r.results, base)].map(([id, f]) => {
    const members = Object.entries(f)
      .filter(([k]) => /^Members\/[^/]+\/DeviceID$/.test(k))
      .map(([k, v]) => {
        const sub = f[k.replace(/DeviceID$/, 'SubGroup')];
        return sub ? `${v}/${sub}` : v;
      });
    return { id, count: Number(f['Count'] ?? 0), members, ...(f['Filter'] ? { filter: f['Filter'] } : {}), ...(f['Description'] ? { description: f['Description'] } : {}) };
  });
  if (opts.json) {
    process.stdout.write(JSON.stringify({ gateway, groups }, null, 2) + '\n');
    return;
  }
  process.stdout.write(
    groups.length
      ? table(['group', 'size', 'members', 'filter', 'description'], groups.map((g) => [g.id, String(g.count), g.members.join(', '), g.filter ?? '', g.description ?? ''])) + '\n'
      : `no groups on ${gateway}\n`,
  );
}

/** `gwmo group set <gateway> <id>`: creates a group or replaces its members, filter and description. */
export async function runGroupSet(gateway: string, id: string, opts: { server: string; members?: string; filter?: string; description?: string; json?: boolean }): Promise<void> {
  const base = `./GwMO/Groups/${id}`;
  const exists = (await dm(opts.server, gateway, { cmd: 'Get', uri: base })).status === 200;
  const commands: Record<string, unknown>[] = [];
  if (exists) commands.push({ cmd: 'Delete', uri: base });
  commands.push({ cmd: 'Add', uri: base, format: 'node' });
  if (opts.description !== undefined) commands.push({ cmd: 'Add', uri: `${base}/Description`, value: opts.description });
  if (opts.filter !== undefined) commands.push({ cmd: 'Add', uri: `${base}/Filter`, value: opts.filter });
  for (const [i, m] of (opts.members ? opts.members.split(',').map((s) => s.trim()).filter(Boolean) : []).entries()) {
    // `gw-floor2/lights` names the group `lights` on child gateway gw-floor2 (GwMO 1.1 recursive groups).
    const slash = m.indexOf('/');
    commands.push({ cmd: 'Add', uri: `${base}/Members/m${i + 1}/DeviceID`, value: slash < 0 ? m : m.slice(0, slash) });
    if (slash >= 0) commands.push({ cmd: 'Add', uri: `${base}/Members/m${i + 1}/SubGroup`, value: m.slice(slash + 1) });
  }
  // One Sequence (an Atomic cannot roll back the group records, docs/fanout.md): when a command is
  // refused (a bad filter, say) the error names it and the group is left as far as it got.
  const r = await dm(opts.server, gateway, { cmd: 'Sequence', commands });
  const codes = (r.statuses ?? []).slice(1).map((s) => s.status);
  if (r.status !== 200 || codes.some((c) => c >= 300)) throw new Error(`group ${id} on ${gateway}: ${codes.map((c) => statusText(c)).join(', ')}`);
  const count = (await dm(opts.server, gateway, { cmd: 'Get', uri: `${base}/Count` })).results[0]?.data ?? '?';
  if (opts.json) process.stdout.write(JSON.stringify({ gateway, group: id, created: !exists, count: Number(count) }) + '\n');
  else process.stdout.write(`group ${id} ${exists ? 'replaced' : 'created'} on ${gateway}: ${count} member(s)\n`);
}

/** `gwmo group delete <gateway> <id>`. */
export async function runGroupDelete(gateway: string, id: string, opts: { server: string }): Promise<void> {
  const r = await dm(opts.server, gateway, { cmd: 'Delete', uri: `./GwMO/Groups/${id}` });
  if (r.status !== 200) throw new Error(`Delete group ${id} on ${gateway}: ${statusText(r.status)}`);
  process.stdout.write(`group ${id} deleted on ${gateway}\n`);
}

/**
 * `gwmo image put <gateway> <name> <file|url>`: stores an image on the gateway (GwMO-DCIS). A URL is
 * fetched by the gateway itself; a local file is served to it from this process on 127.0.0.1
 * (the gateway downloads it with its hash checked), with a progress bar of the bytes it took.
 * The image's LocalURL is what devices download from; distribute it with a fanout using
 * `${ImageURL:<name>}` in a command's data.
 */
export async function runImagePut(gateway: string, name: string, source: string, opts: { server: string; version?: string; kind?: string; json?: boolean; wait: number }): Promise<void> {
  const { createServer } = await import('node:http');
  const { createReadStream } = await import('node:fs');
  const { stat, readFile } = await import('node:fs/promises');
  const { createHash } = await import('node:crypto');
  let url = source;
  let hash: string | undefined;
  let close = async (): Promise<void> => {};
  let sent = 0;
  let size = 0;
  const tty = !opts.json && !!process.stderr.isTTY;
  const isUrl = /^https?:\/\//.test(source);
  if (!isUrl) {
    size = (await stat(source)).size;
    hash = `sha256:${createHash('sha256').update(await readFile(source)).digest('hex')}`;
    const srv = createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(size) });
      const rs = createReadStream(source);
      rs.on('data', (chunk) => {
        sent += chunk.length;
        if (tty) {
          const w = 30;
          const f = Math.round((Math.min(sent, size) / size) * w);
          process.stderr.write(`\r${name} [${'#'.repeat(f)}${' '.repeat(w - f)}] ${Math.min(sent, size)}/${size} bytes`);
        }
      });
      rs.pipe(res);
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(srv.address() as { port: number }).port}/${encodeURIComponent(name)}`;
    close = () => new Promise((r) => srv.close(() => r()));
  }
  try {
    const base = `./GwMO/ImageInventory/Images/${name}`;
    const commands: Record<string, unknown>[] = [{ cmd: 'Add', uri: base, format: 'node' }];
    if (opts.kind) commands.push({ cmd: 'Add', uri: `${base}/Kind`, value: opts.kind });
    if (opts.version) commands.push({ cmd: 'Add', uri: `${base}/Version`, value: opts.version });
    if (hash) commands.push({ cmd: 'Add', uri: `${base}/Hash`, value: hash });
    commands.push({ cmd: 'Add', uri: `${base}/SourceURL`, value: url });
    commands.push({ cmd: 'Exec', uri: `${base}/Operations/Download`, correlator: `img-${name}` });
    const r = await dm(opts.server, gateway, { cmd: 'Sequence', commands });
    const codes = (r.statuses ?? []).slice(1).map((s) => s.status);
    if (codes.some((c) => c >= 300 && c !== 202)) throw new Error(`image ${name} on ${gateway}: ${codes.map((c) => statusText(c)).join(', ')}`);
    // 200: stored within the gateway's wait; 202: still downloading — follow its State.
    const deadline = Date.now() + opts.wait * 1000;
    let state = 0;
    let leaves: Record<string, string> = {};
    while (Date.now() < deadline) {
      const g = await dm(opts.server, gateway, { cmd: 'Get', uri: `${base}?list=StructData` });
      leaves = Object.fromEntries(g.results.map((it) => [it.uri.slice(base.length + 1), it.data ?? '']));
      state = Number(leaves['State'] ?? 0);
      if (state >= 30) break;
      await new Promise((res) => setTimeout(res, 300));
    }
    if (tty) process.stderr.write('\n');
    const STATES: Record<number, string> = { 30: 'stored', 40: 'download failed', 50: 'verification failed' };
    const out = { gateway, image: name, state: STATES[state] ?? String(state), size: Number(leaves['Size'] ?? 0), hash: leaves['Hash'] ?? hash, localUrl: leaves['LocalURL'], ...(isUrl ? {} : { bytesServed: sent }) };
    if (opts.json) process.stdout.write(JSON.stringify(out, null, 2) + '\n');
    else {
      process.stdout.write(`image ${name} on ${gateway}: ${out.state} (${out.size} bytes, ${out.hash ?? 'no hash'})\n`);
      if (out.localUrl) process.stdout.write(`  LocalURL ${out.localUrl}\n  distribute: gwmo fanout ${gateway} --group <group> --cmd 'Replace ./FwUpdate/PkgURL \${ImageURL:${name}}' --cmd 'Exec ./FwUpdate/DownloadAndUpdate'\n`);
    }
    if (state !== 30) process.exitCode = 1;
  } finally {
    await close();
  }
}
