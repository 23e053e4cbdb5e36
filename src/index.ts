/**
 * The embedding API: run gwmo inside your own process (a building management system, a
 * multi-level deployment). `loadTopology` reads and validates a topology file; `startTopology`
 * starts it (server, gateways, simulated peers) and returns handles to every part. The classes
 * are exported for deployments that wire parts themselves. See docs/embedding.md.
 */
export { loadTopology, parseTopology, startTopology, topologyJsonSchema, derivedSecret } from './topology/index.ts';
export type { RunningTopology, StartOptions, Topology, TopologyGateway, TopologyInput } from './topology/index.ts';
export { DmServer } from './server/server.ts';
export { Gateway } from './gateway/gateway.ts';
export { SimDevice } from './device/device.ts';
export { createLogger, type Logger } from './log.ts';
export { GwError, DmStatusError } from './errors.ts';
