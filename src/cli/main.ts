/**
 * The `gwmo` command line: run a DM server or a simulated device, drive devices through the
 * server's API (get/replace/add/delete/exec/copy/results/devices), and run the demo.
 */
import { Command, Option } from 'commander';
import { loadConfig } from '../config.ts';
import { deviceConfigSchema } from '../device/config.ts';
import { SimDevice } from '../device/device.ts';
import { GwError, describeError } from '../errors.ts';
import { createLogger } from '../log.ts';
import { serverConfigSchema } from '../server/config.ts';
import { DmServer } from '../server/server.ts';
import { gatewayConfigSchema } from '../gateway/config.ts';
import { Gateway } from '../gateway/gateway.ts';
import { DEFAULT_SERVER, callApi, setApiTls, statusText, table } from './client.ts';
import { initCerts } from '../transport/certs.ts';
import { runDemo } from './demo.ts';
import { runGatewayProcess } from '../topology/processes.ts';
import { runUp } from './up.ts';
import { runFanout, runGroupDelete, runGroups, runGroupSet, runImagePut, runInventory } from './gwmo-ops.ts';
import { loadTopology, topologyJsonSchema } from '../topology/index.ts';

const program = new Command();
program
  .name('gwmo')
  .description('Open OMA DM gateway runtime: DM server, simulated DM devices, operator commands.')
  .version('0.1.0')
  .option('--ca <pem>', 'CA certificate the operator commands verify an https server API against (or GWMO_CA)')
  .option('--cert <pem>', 'client certificate for a server API that asks for one (mutual TLS; or GWMO_CERT)')
  .option('--key <pem>', 'key of --cert (or GWMO_KEY)')
  .hook('preAction', (cmd) => {
    const o = cmd.opts<{ ca?: string; cert?: string; key?: string }>();
    setApiTls({ ...(o.ca ? { ca: o.ca } : {}), ...(o.cert ? { cert: o.cert } : {}), ...(o.key ? { key: o.key } : {}) });
  })
  .showHelpAfterError()
  .addHelpText(
    'after',
    `
Examples:
  $ gwmo demo                                   run a server and three devices and show a management session
  $ gwmo server --config server.yaml --data ./data/server
  $ gwmo gateway --config gateway.yaml --data ./data/gw1
  $ gwmo device --config device.yaml --connect
  $ gwmo get IMEI:493005100592800 ./DevInfo/Mod
  $ gwmo replace IMEI:493005100592800 ./Vendor/Name kitchen --json`,
  );

const logOptions = (cmd: Command): Command =>
  cmd.option('--log-json', 'log JSON lines instead of readable text').addOption(new Option('--log-level <level>', 'log level').choices(['debug', 'info', 'warn', 'error']).default('info'));

let signalled: Promise<void> | undefined;
/**
 * Resolves on Ctrl-C or SIGTERM; a clean shutdown that takes longer than 20 s (open sessions get up to
 * `limits.drainTimeout`, 10 s by default, to finish) or a second signal exits anyway (code 130).
 * Long-running commands call it once before they start (unawaited) so a signal that arrives while they are
 * starting is latched and ends them cleanly afterwards, instead of killing the process half-started.
 */
function waitForSignal(): Promise<void> {
  return (signalled ??= new Promise((resolve) => {
    const done = (): void => {
      const force = (): never => process.exit(130);
      setTimeout(force, 20_000).unref();
      process.once('SIGINT', force);
      process.once('SIGTERM', force);
      resolve();
    };
    process.once('SIGINT', done);
    process.once('SIGTERM', done);
  }));
}

logOptions(
  program
    .command('server')
    .description('run a DM server (SyncML DM over HTTP, operator API under /api)')
    .requiredOption('-c, --config <file>', 'server.yaml (listen, path, serverId, serverSecret, serverAuthType, accounts)')
    .option('-d, --data <dir>', 'data directory (LevelDB); overrides `data:` in the config')
    .option('-l, --listen <host:port>', 'overrides `listen:` in the config')
    .addHelpText('after', '\nExample:\n  $ gwmo server --config examples/server.yaml --data ./data/server'),
).action(async (opts: { config: string; data?: string; listen?: string; logJson?: boolean; logLevel: 'info' }) => {
  void waitForSignal();
  const config = await loadConfig(opts.config, serverConfigSchema);
  if (opts.listen) config.listen = opts.listen;
  const logger = createLogger('server', { json: !!opts.logJson, level: opts.logLevel });
  const server = await DmServer.create({ config, ...(opts.data ? { dataDir: opts.data } : {}), logger });
  await server.start();
  process.stdout.write(`DM endpoint ${server.dmUrl}\nOperator API ${server.url}/api\n`);
  await waitForSignal();
  logger.info('shutting down');
  await server.stop({ drain: true });
});

logOptions(
  program
    .command('device')
    .description('run a simulated DM client device (Package 0 listener, sessions with its server)')
    .requiredOption('-c, --config <file>', 'device.yaml (deviceId, server account, notify listener, nodes)')
    .option('-d, --data <dir>', 'data directory (LevelDB) for the device tree; in memory without it')
    .option('--connect', 'open a client-initiated session at start')
    .option('--once', 'open one client-initiated session, then exit (exit code 1 if it fails)')
    .addHelpText('after', '\nExample:\n  $ gwmo device --config examples/device.yaml --connect'),
).action(async (opts: { config: string; data?: string; connect?: boolean; once?: boolean; logJson?: boolean; logLevel: 'info' }) => {
  const config = await loadConfig(opts.config, deviceConfigSchema);
  const logger = createLogger('device', { json: !!opts.logJson, level: opts.logLevel }).child(config.deviceId);
  const device = await SimDevice.create({ config, ...(opts.data ? { dataDir: opts.data } : {}), logger });
  if (opts.once) {
    const r = await device.connect();
    await device.stop();
    process.exitCode = r.ok ? 0 : 1;
    return;
  }
  void waitForSignal();
  await device.start();
  process.stdout.write(`Package 0 listener ${device.notifyUrl}\n`);
  if (opts.connect) await device.connect();
  await waitForSignal();
  await device.stop();
});

logOptions(
  program
    .command('gateway')
    .description('run a DM gateway (DM client to its parent, DM server to its proxy-mode devices and child gateways)')
    .requiredOption('-c, --config <file>', 'gateway.yaml (id, parent, listen, path, serverId, serverSecret, serverAuthType, devices)')
    .option('-d, --data <dir>', 'data directory (LevelDB); overrides `data:` in the config')
    .addHelpText('after', '\nExample:\n  $ gwmo gateway --config examples/gateway.yaml --data .data/gw1'),
).action(async (opts: { config: string; data?: string; logJson?: boolean; logLevel: 'info' }) => {
  void waitForSignal();
  const config = await loadConfig(opts.config, gatewayConfigSchema);
  const logger = createLogger('gateway', { json: !!opts.logJson, level: opts.logLevel }).child(config.id);
  const gateway = await Gateway.create({ config, ...(opts.data ? { dataDir: opts.data } : {}), logger });
  await gateway.start();
  process.stdout.write(`Gateway ${config.id}: southbound DM endpoint ${gateway.southUrl}\nPackage 0 listener ${gateway.north.notifyUrl}\n`);
  await waitForSignal();
  await gateway.stop({ drain: true });
});

/** Common options of the operator commands. */
function operatorCommand(name: string, args: string, description: string, example: string): Command {
  return program
    .command(`${name} ${args}`)
    .description(description)
    .option('-s, --server <url>', 'server API base URL (or GWMO_SERVER)', DEFAULT_SERVER)
    .option('--json', 'print JSON for scripts')
    .option('--no-wait', 'only queue the command; the device gets it in its next session')
    .option('--no-notify', 'do not send a Package 0 to wake the device')
    .option('-t, --timeout <seconds>', 'how long to wait for the result', (v) => Number(v), 60)
    .addHelpText('after', `\nExample:\n  $ ${example}`);
}

interface OperatorOpts {
  server: string;
  json?: boolean;
  wait: boolean;
  notify: boolean;
  timeout: number;
  format?: string;
  type?: string;
  correlator?: string;
}

/** One line for the route a command took (issue "server-initiated session bypassing the gateway"). */
function routeText(d: { kind: string; via?: string; fallbackFrom?: string }): string {
  const where = d.kind === 'direct' ? `direct, bypassing ${d.via}` : d.via ? `${d.kind} via ${d.via}` : d.kind === 'own' ? 'its own address' : d.kind;
  return d.fallbackFrom ? `${where}, after ${d.fallbackFrom} failed` : where;
}

async function runOperator(device: string, body: Record<string, unknown>, opts: OperatorOpts): Promise<void> {
  const { status, json } = await callApi(opts.server, 'POST', `api/devices/${encodeURIComponent(device)}/commands`, {
    ...body,
    wait: opts.wait,
    notify: opts.notify,
    timeout: opts.timeout,
  });
  if (opts.json) {
    process.stdout.write(JSON.stringify(json, null, 2) + '\n');
  } else if (json.state !== 'done') {
    process.stdout.write(
      status === 202 && opts.wait
        ? `queued as ${json.id}; no result within ${opts.timeout}s (the device gets it in its next session; see \`gwmo results ${device}\`)\n`
        : `queued as ${json.id}\n`,
    );
  } else {
    process.stdout.write(`${json.cmd} ${json.target}: ${statusText(json.status)}${json.delivery ? `  [route: ${routeText(json.delivery)}]` : ''}\n`);
    if (json.statuses?.length > 1) {
      process.stdout.write(table(['#', 'cmd', 'target', 'status'], json.statuses.map((s: any) => [s.path.join('.') || '-', s.cmd, s.target, statusText(s.status)])) + '\n');
    }
    for (const r of json.results ?? []) process.stdout.write(`${r.uri} = ${r.data ?? ''}${r.format && r.format !== 'chr' ? `  (${r.format})` : ''}\n`);
  }
  if (json.state === 'done' && json.status >= 300) process.exitCode = 1;
}

operatorCommand('get', '<device> <uri>', 'read a node (add ?list=Struct or ?prop=ACL to the URI for structure or properties)', 'gwmo get IMEI:1 "./DevInfo?list=Struct"').action(
  (device: string, uri: string, opts: OperatorOpts) => runOperator(device, { cmd: 'Get', uri }, opts),
);
operatorCommand('replace', '<device> <uri> <value>', "replace a node's value", 'gwmo replace IMEI:1 ./Vendor/Name kitchen')
  .option('-f, --format <format>', 'Meta Format (chr, int, bool, b64, ...)')
  .option('--type <mime>', 'Meta Type')
  .action((device: string, uri: string, value: string, opts: OperatorOpts) =>
    runOperator(device, { cmd: 'Replace', uri, value, ...(opts.format ? { format: opts.format } : {}), ...(opts.type ? { type: opts.type } : {}) }, opts),
  );
operatorCommand('add', '<device> <uri> [value]', 'add a node (use --format node for an interior node)', 'gwmo add IMEI:1 ./Vendor/Rooms --format node')
  .option('-f, --format <format>', 'Meta Format (node, chr, int, ...)')
  .option('--type <mime>', 'Meta Type')
  .action((device: string, uri: string, value: string | undefined, opts: OperatorOpts) =>
    runOperator(
      device,
      { cmd: 'Add', uri, ...(value !== undefined ? { value } : {}), ...(opts.format ? { format: opts.format } : {}), ...(opts.type ? { type: opts.type } : {}) },
      opts,
    ),
  );
operatorCommand('delete', '<device> <uri>', 'delete a node and its subtree', 'gwmo delete IMEI:1 ./Vendor/Rooms').action(
  (device: string, uri: string, opts: OperatorOpts) => runOperator(device, { cmd: 'Delete', uri }, opts),
);
operatorCommand('exec', '<device> <uri> [data]', 'execute a node', 'gwmo exec IMEI:1 ./Vendor/Counter')
  .option('--correlator <id>', 'correlator for an asynchronous result (Generic Alert)')
  .action((device: string, uri: string, data: string | undefined, opts: OperatorOpts) =>
    runOperator(device, { cmd: 'Exec', uri, ...(data !== undefined ? { value: data } : {}), ...(opts.correlator ? { correlator: opts.correlator } : {}) }, opts),
  );
operatorCommand('copy', '<device> <target> <source>', "copy a leaf's value onto another leaf", 'gwmo copy IMEI:1 ./Vendor/Name ./DevInfo/Mod').action(
  (device: string, target: string, source: string, opts: OperatorOpts) => runOperator(device, { cmd: 'Copy', uri: target, source }, opts),
);

program
  .command('results <device>')
  .description('list the commands sent to a device and their results')
  .option('-s, --server <url>', 'server API base URL (or GWMO_SERVER)', DEFAULT_SERVER)
  .option('--json', 'print JSON for scripts')
  .addHelpText('after', '\nExample:\n  $ gwmo results IMEI:1 --json')
  .action(async (device: string, opts: { server: string; json?: boolean }) => {
    const { json } = await callApi(opts.server, 'GET', `api/devices/${encodeURIComponent(device)}/commands`);
    if (opts.json) {
      process.stdout.write(JSON.stringify(json, null, 2) + '\n');
      return;
    }
    const rows = json.commands.map((c: any) => [
      c.id,
      c.cmd,
      c.target,
      c.state,
      c.state === 'done' ? statusText(c.status) : '',
      c.delivery ? routeText(c.delivery) : '',
      (c.results ?? []).map((r: any) => r.data).join(' | ').slice(0, 60),
    ]);
    process.stdout.write(rows.length ? table(['id', 'cmd', 'target', 'state', 'status', 'route', 'data'], rows) + '\n' : 'no commands\n');
  });

program
  .command('devices')
  .description('list the devices the server has accounts for')
  .option('-s, --server <url>', 'server API base URL (or GWMO_SERVER)', DEFAULT_SERVER)
  .option('--json', 'print JSON for scripts')
  .action(async (opts: { server: string; json?: boolean }) => {
    const { json } = await callApi(opts.server, 'GET', 'api/devices');
    if (opts.json) {
      process.stdout.write(JSON.stringify(json, null, 2) + '\n');
      return;
    }
    const rows = json.devices.map((d: any) => [d.deviceId, d.devInfo?.Mod, d.delivery ? routeText(d.delivery) : d.via ? `${d.via} (${d.mode ?? '?'})` : 'direct', d.sessions, d.pending, d.lastSessionAt]);
    process.stdout.write(table(['device', 'model', 'route', 'sessions', 'pending', 'last session'], rows) + '\n');
  });

logOptions(
  program
    .command('up [topology]')
    .description('start a whole topology: the DM server, every gateway, simulated peers and devices (default: the demo building)')
    .option('-d, --data <dir>', 'data directory; started again on the same one it resumes (default: a temporary directory)')
    .option('-l, --listen <host:port>', "overrides the embedded server's listen address")
    .option('--visualizer <host:port>', 'where the live state visualizer listens', '127.0.0.1:0')
    .option('--no-visualizer', 'do not start the live state visualizer')
    .option('-w, --watch', 'reload the topology when the file changes (only changed gateways restart)')
    .option('-p, --processes', 'run each gateway (with its simulated peers and devices) in its own OS process')
    .option('--json', 'print the URLs and a summary as JSON'),
)
  .addHelpText(
    'after',
    `
Examples:
  $ gwmo up                                         # the demo building (topologies/building.yaml)
  $ gwmo up topologies/building.yaml --data .data/building --watch   # edit the file: changed gateways restart
  $ gwmo up --processes                             # one OS process per gateway; a crashed one is restarted
  $ gwmo up my-site.yaml --listen 127.0.0.1:9000 --json`,
  )
  .action(async (file: string | undefined, opts: { data?: string; listen?: string; visualizer: string | false; watch?: boolean; processes?: boolean; json?: boolean; logLevel: 'debug' | 'info' | 'warn' | 'error'; logJson?: boolean }) => {
    void waitForSignal();
    await runUp(file, { ...opts, waitForSignal });
  });

const certs = program.command('certs').description('TLS certificates for gwmo deployments');
certs
  .command('init <dir>')
  .description('create a local CA and certificates (server, gateways, devices) for HTTPS on every link; run again to add names')
  .option('-n, --names <list>', 'comma-separated names to issue certificates for (CN and file name), besides "server"', '')
  .option('--hosts <list>', 'host names and IP addresses the certificates are valid for', '127.0.0.1,::1,localhost')
  .option('--days <n>', 'validity in days', (v) => Number(v), 825)
  .option('--force', 're-issue certificates that exist (the CA is kept)')
  .option('--json', 'print the paths as JSON')
  .addHelpText(
    'after',
    `
Examples:
  $ gwmo certs init .certs --names gw-building,gw-floor1,IMEI:493005100592800
  $ gwmo server --config server.yaml     # with  tls: { cert: .certs/server.pem, key: .certs/server-key.pem, ca: .certs/ca.pem }
  $ gwmo devices --server https://127.0.0.1:8443 --ca .certs/ca.pem`,
  )
  .action(async (dir: string, opts: { names: string; hosts: string; days: number; force?: boolean; json?: boolean }) => {
    const list = (v: string): string[] => v.split(',').map((x) => x.trim()).filter(Boolean);
    const r = await initCerts(dir, { names: list(opts.names), hosts: list(opts.hosts), days: opts.days, ...(opts.force ? { force: true } : {}) });
    if (opts.json) process.stdout.write(JSON.stringify(r, null, 2) + '\n');
    else {
      process.stdout.write(`${r.caCreated ? 'created' : 'kept'} CA ${r.ca} (key ${r.caKey}, keep it private)\n`);
      process.stdout.write(table(['name', 'certificate', 'key', ''], r.certs.map((c) => [c.name, c.cert, c.key, c.created ? 'created' : 'kept'])) + '\n');
    }
  });

// One gateway of `gwmo up --processes`, spawned by it with an IPC channel (hidden: not run by hand).
program
  .command('up-part', { hidden: true })
  .description('internal: one gateway process of `gwmo up --processes`')
  .action(async () => {
    await runGatewayProcess();
  });

program
  .command('inventory <gateway>')
  .description("a gateway's device inventory: devices and child gateways with mode, protocol and status")
  .option('-s, --server <url>', 'server API base URL (or GWMO_SERVER)', DEFAULT_SERVER)
  .option('--json', 'print JSON for scripts')
  .addHelpText('after', '\nExamples:\n  $ gwmo inventory gw-building\n  $ gwmo inventory gw-floor2 --json')
  .action((gateway: string, opts: { server: string; json?: boolean }) => runInventory(gateway, opts));

const collect = (v: string, prev: string[]): string[] => [...prev, v];
program
  .command('fanout <gateway>')
  .description("run DM commands on every member of a group of the gateway's subtree: live progress, one result table")
  .option('-s, --server <url>', 'server API base URL (or GWMO_SERVER)', DEFAULT_SERVER)
  .option('-g, --group <id>', 'a group of ./GwMO/Groups on the gateway (* = every device below it)')
  .option('--devices <ids>', 'comma-separated DeviceIDs instead of a group')
  .option('-c, --cmd <command>', 'a command per member, e.g. "Get ./DevInfo/Mod" or "Replace ./Point/Value on" (repeatable; run in order)', collect, [])
  .option('--name <job>', 'job name under ./GwMO/Fanout (default: cli-<time>)')
  .option('--timeout <seconds>', 'per-member timeout (Policy/Timeout)', (v) => Number(v))
  .option('--concurrency <n>', 'members in flight at once (Policy/MaxConcurrency)', (v) => Number(v))
  .option('--wait <seconds>', 'how long to follow the job', (v) => Number(v), 600)
  .option('--keep', 'keep the job on the gateway afterwards (it is deleted by default)')
  .option('--json', 'print JSON for scripts')
  .addHelpText(
    'after',
    `
Examples:
  $ gwmo fanout gw-building --group all-lights --cmd "Replace ./Point/Value on"
  $ gwmo fanout gw-building --group everything --cmd "Get ./DevInfo/Mod" --cmd "Get ./DevDetail/FwV" --json
  $ gwmo fanout gw-floor2 --devices urn:dev:sim:r201-light,urn:dev:sim:r202-light --cmd "Exec ./Diag/Run"`,
  )
  .action((gateway: string, opts: Parameters<typeof runFanout>[1]) => runFanout(gateway, opts));

program
  .command('groups <gateway>')
  .description("a gateway's groups: size, members (gw/sub = a group on a child gateway) and filter")
  .option('-s, --server <url>', 'server API base URL (or GWMO_SERVER)', DEFAULT_SERVER)
  .option('--json', 'print JSON for scripts')
  .addHelpText('after', '\nExample:\n  $ gwmo groups gw-building')
  .action((gateway: string, opts: { server: string; json?: boolean }) => runGroups(gateway, opts));
const groupCmd = program.command('group').description('create, replace or delete a group on a gateway');
groupCmd
  .command('set <gateway> <id>')
  .description('create a group, or replace its definition')
  .option('-s, --server <url>', 'server API base URL (or GWMO_SERVER)', DEFAULT_SERVER)
  .option('-m, --members <ids>', 'comma-separated DeviceIDs; gw-floor2/lights = group lights on child gateway gw-floor2')
  .option('-f, --filter <query>', 'inventory filter, e.g. "Protocol=KNX" or "Mod=sim-light"')
  .option('-d, --description <text>', 'a description')
  .option('--json', 'print JSON for scripts')
  .addHelpText('after', '\nExamples:\n  $ gwmo group set gw-floor1 knx --filter Protocol=KNX\n  $ gwmo group set gw-building upper --members gw-floor2,gw-floor3/lights')
  .action((gateway: string, id: string, opts: { server: string; members?: string; filter?: string; description?: string; json?: boolean }) => runGroupSet(gateway, id, opts));
groupCmd
  .command('delete <gateway> <id>')
  .description('delete a group')
  .option('-s, --server <url>', 'server API base URL (or GWMO_SERVER)', DEFAULT_SERVER)
  .addHelpText('after', '\nExample:\n  $ gwmo group delete gw-floor1 knx')
  .action((gateway: string, id: string, opts: { server: string }) => runGroupDelete(gateway, id, opts));
program
  .command('image')
  .description('images stored on gateways (GwMO-DCIS)')
  .command('put <gateway> <name> <source>')
  .description('store a file (served to the gateway from here, with a progress bar) or a URL (fetched by the gateway) as an image')
  .option('-s, --server <url>', 'server API base URL (or GWMO_SERVER)', DEFAULT_SERVER)
  .option('--image-version <v>', 'the image version (its Version leaf)')
  .option('--kind <kind>', 'firmware, software or config')
  .option('--wait <seconds>', 'how long to wait for the gateway to store it', (v) => Number(v), 300)
  .option('--json', 'print JSON for scripts')
  .addHelpText(
    'after',
    `
Examples:
  $ gwmo image put gw-building fw-2.1 ./build/fw-2.1.bin --image-version 2.1.0 --kind firmware
  $ gwmo image put gw-building cfg-lobby https://files.example/cfg/lobby.json --kind config
  # then distribute it: every device downloads from its own gateway
  $ gwmo fanout gw-building --group everything --cmd 'Replace ./FwUpdate/PkgURL \${ImageURL:fw-2.1}' --cmd 'Exec ./FwUpdate/DownloadAndUpdate'`,
  )
  .action((gateway: string, name: string, source: string, opts: { server: string; imageVersion?: string; kind?: string; json?: boolean; wait: number }) =>
    runImagePut(gateway, name, source, { ...opts, ...(opts.imageVersion ? { version: opts.imageVersion } : {}) }),
  );

const topologyCmd = program.command('topology').description('check topology files and print their JSON Schema');
topologyCmd
  .command('check <file>')
  .description('validate a topology file (errors name the file, line and field)')
  .option('--json', 'print the validated topology (defaults applied) as JSON')
  .addHelpText('after', '\nExample:\n  $ gwmo topology check topologies/building.yaml')
  .action(async (file: string, opts: { json?: boolean }) => {
    const t = await loadTopology(file);
    if (opts.json) process.stdout.write(JSON.stringify(t, null, 2) + '\n');
    else {
      const count = (gws: typeof t.gateways): number => gws.reduce((n, g) => n + 1 + count(g.gateways), 0);
      process.stdout.write(`${file}: valid (${count(t.gateways)} gateways)\n`);
    }
  });
topologyCmd
  .command('schema')
  .description('print the JSON Schema of topology files (for editor completion)')
  .addHelpText('after', '\nExample:\n  $ gwmo topology schema > topologies/topology.schema.json')
  .action(() => {
    process.stdout.write(JSON.stringify(topologyJsonSchema(), null, 2) + '\n');
  });

program
  .command('demo')
  .description('start a DM server and three simulated devices in-process and run a visible management session')
  .option('--json', 'print the session results as JSON')
  .option('--keep', 'keep running after the demo (Ctrl-C to stop) so you can try the CLI against it')
  .option('-l, --listen <host:port>', 'where the demo server listens', '127.0.0.1:0')
  .action(async (opts: { json?: boolean; keep?: boolean; listen: string }) => {
    if (opts.keep) void waitForSignal();
    await runDemo({ json: !!opts.json, keep: !!opts.keep, listen: opts.listen, waitForSignal });
  });

// Output piped into `head` and the like: a closed pipe ends the command quietly, as in Unix tools.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

try {
  await program.parseAsync(process.argv);
} catch (err) {
  const code = err instanceof GwError ? err.code : 'ERROR';
  process.stderr.write(`gwmo: ${describeError(err)}\n`);
  process.exitCode = code.startsWith('CONFIG_') ? 2 : 1;
}
