/**
 * Loads npm `knx@2.5.4` internals (its Connection state machine and its DPT codecs) with its
 * logging tamed: the package's entry point logs a banner on import and its DPT modules log through
 * log-driver's default logger at debug level to the console. We load the modules directly and
 * silence what would otherwise flood a gateway's stdout; warnings and errors of the DPT codecs stay
 * (our own checks in dpt.ts keep bad values from reaching them).
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

type Log = Record<'error' | 'warn' | 'info' | 'debug' | 'trace', (...a: unknown[]) => void>;
const noop = (): void => {};
const driver = require('log-driver') as { logger: Log };
for (const level of ['info', 'debug', 'trace'] as const) driver.logger[level] = noop;

/** A logger that drops everything (the Connection's own chatter). */
const quiet: Log = { error: noop, warn: noop, info: noop, debug: noop, trace: noop };
const knxLog = require('knx/src/KnxLog.js') as { get: (o?: unknown) => Log };
knxLog.get = () => quiet;

/** `require` for the knx package's modules, after the logging above is in place. */
export const knxRequire = require;
