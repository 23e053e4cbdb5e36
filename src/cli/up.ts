/**
 * `gwmo up`: starts a whole topology (the main job): the embedded DM server, every gateway (in this
 * process, or each in its own with `--processes`), the simulated peers and devices; shows progress while it starts, prints where to reach
 * it, and stops cleanly on Ctrl-C. Logs go to `<data>/gwmo.log` (warnings also to the terminal),
 * so the terminal stays readable.
 */
import { appendFileSync, existsSync } from 'node:fs';
import { mkdtemp, mkdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createLogger, type LogLevel } from '../log.ts';
import { InspectionHub } from '../inspect/hub.ts';
import { startVisualizer, type Visualizer } from '../inspect/server.ts';
import { loadTopology, startTopology, type RunningTopology } from '../topology/index.ts';

/** The demo building shipped with gwmo (used when no topology is named). */
export const DEFAULT_TOPOLOGY = resolve(dirname(fileURLToPath(import.meta.url)), '../../topologies/building.yaml');

/** Options of `gwmo up`. */
export interface UpOptions {
  data?: string;
  /** Overrides the embedded server's `listen`. */
  listen?: string;
  /** Where the live visualizer listens (`host:port`), or false for none. */
  visualizer: string | false;
  /** Reload the topology when its file changes (only changed subtrees restart). */
  watch?: boolean;
  /** Each gateway in its own OS process. */
  processes?: boolean;
  json?: boolean;
  logLevel: LogLevel;
  logJson?: boolean;
  waitForSignal: () => Promise<void>;
  /** Called once the topology runs (tests and embedders); `gwmo up` waits for a signal after it. */
  onRunning?: (run: RunningTopology) => Promise<void> | void;
}

/** A one-line progress bar on a terminal; plain lines otherwise. */
function progress(tty: boolean): { update(done: number, total: number, what: string): void; end(): void } {
  let last = '';
  return {
    update(done, total, what) {
      if (!tty) {
        process.stderr.write(`[${done}/${total}] ${what}\n`);
        return;
      }
      const width = 24;
      const filled = Math.round((done / total) * width);
      const line = `starting [${'#'.repeat(filled)}${' '.repeat(width - filled)}] ${done}/${total} ${what}`.slice(0, (process.stderr.columns || 100) - 1);
      process.stderr.write(`\r${line.padEnd(last.length)}`);
      last = line;
    },
    end() {
      if (tty && last) process.stderr.write('\n');
    },
  };
}

/** Runs `gwmo up`. */
export async function runUp(file: string | undefined, opts: UpOptions): Promise<void> {
  const path = file ?? (existsSync('topologies/building.yaml') ? 'topologies/building.yaml' : DEFAULT_TOPOLOGY);
  const topology = await loadTopology(path);
  if (opts.listen !== undefined) {
    if ('url' in topology.server) throw new Error('--listen applies to an embedded server; this topology names an external one');
    topology.server.listen = opts.listen;
  }
  const temporary = !opts.data;
  const dataDir = opts.data ?? (await mkdtemp(join(tmpdir(), `gwmo-${topology.name}-`)));
  await mkdir(dataDir, { recursive: true });
  const logFile = join(dataDir, 'gwmo.log');
  // One log file for the whole deployment, gateway processes included; warnings also on the terminal.
  const logLine = (line: string): void => {
    appendFileSync(logFile, `${line}\n`);
    if (/\b(WARN|ERROR)\b|"level":"(warn|error)"/.test(line)) process.stderr.write(`${line}\n`);
  };
  const logger = createLogger('gwmo', { level: opts.logLevel, ...(opts.logJson ? { json: true } : {}), write: logLine });
  const bar = progress(!opts.json && !!process.stderr.isTTY);
  if (!opts.json) process.stderr.write(`gwmo up: ${path} (${topology.description ?? topology.name}), data in ${dataDir}${temporary ? ' (temporary; --data DIR keeps it)' : ''}\n`);
  const t0 = Date.now();
  // The visualizer's hub sees every actor from the first one on; the page can be opened at any time.
  const hub = opts.visualizer === false ? undefined : new InspectionHub();
  let run: RunningTopology;
  try {
    run = await startTopology(topology, {
      dataDir,
      logger,
      onProgress: (d, n, w) => bar.update(d, n, w),
      ...(hub ? { inspectFor: (part: { gateway?: string }) => (part.gateway ? hub.observerFor({ gateway: part.gateway }) : hub.observer) } : {}),
      ...(opts.processes ? { processes: true, logLine, logLevel: opts.logLevel, ...(opts.logJson ? { logJson: true } : {}), ...(hub ? { remoteInspect: hub } : {}) } : {}),
    });
  } finally {
    bar.end();
  }
  let viz: Visualizer | undefined;
  if (hub) viz = await startVisualizer({ hub, listen: opts.visualizer as string });
  const summary = {
    topology: path,
    name: topology.name,
    dataDir,
    log: logFile,
    startedMs: Date.now() - t0,
    server: run.urls.dm,
    ...(run.urls.api ? { api: run.urls.api } : {}),
    ...(viz ? { visualizer: viz.url } : {}),
    ...(run.tls ? { tls: run.tls } : {}),
    processes: !!opts.processes,
    gateways: await Promise.all([...run.parts.values()].map(async (g) => ({ id: g.id, south: g.southUrl, pid: g.pid, devices: await g.associationCount() }))),
    warnings: run.warnings,
  };
  if (opts.json) process.stdout.write(JSON.stringify(summary, null, 2) + '\n');
  else {
    const out = [
      `running ${topology.name}: ${summary.gateways.length} gateways${opts.processes ? ` in ${summary.gateways.length} processes` : ''}, ${summary.gateways.reduce((n, g) => n + g.devices, 0)} associations (${summary.startedMs} ms)`,
      `  DM server   ${run.urls.dm}`,
      ...(run.urls.api ? [`  API         ${run.urls.api}    (gwmo --server ${run.urls.api.replace(/\/api$/, '')} ...)`] : []),
      ...(viz ? [`  visualizer  ${viz.url}    (live actors and state machines; open it in a browser)`] : []),
      ...(run.tls
        ? [`  TLS         every link is HTTPS (CA ${run.tls.ca}); the CLI needs:`, `              --ca ${run.tls.ca} --cert ${run.tls.operator.cert} --key ${run.tls.operator.key}`]
        : []),
      `  logs        ${logFile}`,
      ...run.warnings.map((w) => `  warning     ${w}`),
      'Ctrl-C stops it.',
    ];
    process.stdout.write(out.join('\n') + '\n');
  }
  let unwatch: (() => void) | undefined;
  if (opts.watch) {
    const { watchFile, unwatchFile } = await import('node:fs');
    let timer: NodeJS.Timeout | undefined;
    let reloading = Promise.resolve();
    // Polled (watchFile), not fs.watch: editors and `sed -i` replace the file, which fs.watch loses.
    // Editors also save in several steps: act once the file has been quiet for a moment.
    const onChange = (): void => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        reloading = reloading.then(async () => {
          try {
            const next = await loadTopology(path);
            if (opts.listen !== undefined && !('url' in next.server)) next.server.listen = opts.listen;
            const r = await run.reload(next);
            process.stderr.write(`reloaded ${path}: restarted ${r.restarted.join(', ') || 'nothing'}${r.removed.length ? `; removed ${r.removed.join(', ')}` : ''}\n`);
          } catch (err) {
            // A broken edit leaves the running deployment as it was; the message says where the file is wrong.
            process.stderr.write(`reload of ${path} refused: ${(err as Error).message}\n`);
          }
        });
      }, 300);
    };
    watchFile(path, { interval: 500 }, onChange);
    unwatch = () => unwatchFile(path, onChange);
    if (!opts.json) process.stderr.write(`watching ${path}: saved changes restart only the changed gateways\n`);
  }
  try {
    await opts.onRunning?.(run);
    if (!opts.onRunning) await opts.waitForSignal();
  } finally {
    unwatch?.();
    if (!opts.json) process.stderr.write('stopping...\n');
    await viz?.close();
    await run.stop();
    if (temporary) await rm(dataDir, { recursive: true, force: true });
  }
}
